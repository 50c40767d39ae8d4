// A Node app using the official `openai` package through the proxy: a conversation of several
// turns that resends its whole history each time (the usual chat-app pattern), over chat
// completions or the Responses API, streaming or not. Prints one JSON line per turn with what the
// app saw (reply text, memory headers, usage) for the Python test to check against the upstream.
//
//   node node_openai.cjs BASE_URL chat|responses stream|plain TURNS SESSION
const OpenAI = require("openai");

const [baseURL, api, mode, turnsArg, session] = process.argv.slice(2);
const stream = mode === "stream";
const client = new OpenAI({ baseURL, apiKey: process.env.TEST_OPENAI_KEY, maxRetries: 0,
                            defaultHeaders: { "X-Memory-Session": session } });

function question(i) {
  const head = i === 0 ? "Decision: the release branch is named aurora.\n" : `Turn ${i}: `;
  return head + Array.from({ length: 40 }, (_, k) => `note-${i}-${k}`).join(" ");
}

async function chatTurn(history) {
  if (!stream) {
    const { data, response } = await client.chat.completions.create({ model: "gpt-4o-mini", messages: history }).withResponse();
    return { text: data.choices[0].message.content, headers: response.headers, usage: data.usage };
  }
  const { data, response } = await client.chat.completions
    .create({ model: "gpt-4o-mini", messages: history, stream: true, stream_options: { include_usage: true } }).withResponse();
  let text = "";
  let usage = null;
  for await (const chunk of data) {
    if (!chunk.choices.length) usage = chunk.usage;
    for (const choice of chunk.choices) text += choice.delta.content || "";
  }
  return { text, headers: response.headers, usage };
}

async function responsesTurn(history) {
  if (!stream) {
    const { data, response } = await client.responses.create({ model: "gpt-4o-mini", input: history }).withResponse();
    return { text: data.output_text, headers: response.headers, usage: data.usage, output: data.output };
  }
  const { data, response } = await client.responses.create({ model: "gpt-4o-mini", input: history, stream: true }).withResponse();
  let text = "";
  let done = null;
  for await (const event of data) {
    if (event.type === "response.output_text.delta") text += event.delta;
    if (event.type === "response.completed") done = event.response;
  }
  return { text, headers: response.headers, usage: done && done.usage, output: done ? done.output : [] };
}

async function main() {
  const history = [];
  for (let i = 0; i < Number(turnsArg); i++) {
    history.push({ role: "user", content: question(i) });
    const turn = api === "chat" ? await chatTurn(history) : await responsesTurn(history);
    if (api === "chat") history.push({ role: "assistant", content: turn.text });
    else history.push(...turn.output);
    console.log(JSON.stringify({
      text: turn.text, usage: turn.usage, compiled: Number(turn.headers.get("x-memory-compiled-tokens")),
      original: Number(turn.headers.get("x-memory-original-tokens")), session: turn.headers.get("x-memory-session"),
    }));
  }
}

main().catch((err) => { console.error(String(err && err.stack || err)); process.exit(1); });
