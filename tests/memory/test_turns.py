"""The turn rules of `memory.turn.turns`: the budget is a target, never a guillotine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from memory import create_runtime, get_counter
from memory.prompt.need import plain_chat, uses_tools
from memory.turn.turns import Request, align_request, effective_budget, request_key, tools_tokens, turn_inputs

COUNTER = get_counter("gpt-4o-mini")


def test_the_apps_fixed_part_counts_up_to_half_the_budget_and_goes_on_top_beyond() -> None:
    assert effective_budget(4000, 300) == 4000  # a chat app's system prompt: nothing changes
    assert effective_budget(4000, 2000) == 4000
    assert effective_budget(4000, 4100) == 6100  # Codex-sized instructions: memory keeps 2,000
    assert effective_budget(4000, 17000) == 19000  # Claude Code-sized


def _history(turns: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for i in range(turns):
        messages += [{"role": "user", "content": f"Turn {i}: the release checklist item {i} " + "detail " * 40},
                     {"role": "assistant", "content": f"Noted item {i}."}]
    return messages


async def test_an_agent_with_long_instructions_is_served_within_the_default_budget() -> None:
    instructions = {"role": "developer", "content": "Follow the repository's conventions. " * 2500}  # ~15k tokens
    assert COUNTER.message_tokens(instructions) > 12_000
    async with create_runtime(storage_path=":memory:", embedding_model="none") as rt:
        session = rt.session("agent")
        messages = [instructions] + _history(30) + [{"role": "user", "content": "What was turn 1 about?"}]
        plan = await session.prepare_turn(messages, 4000)
    assert plan.mode != "over_budget"
    assert plan.messages[0] == instructions and plan.messages[-1] == messages[-1]
    assert len(plan.messages) > 3  # history or evidence came along
    assert plan.result.tokens <= effective_budget(4000, COUNTER.message_tokens(instructions))


async def test_over_budget_the_task_the_state_block_and_recent_turns_still_go() -> None:
    decision = "Decision: ship the beta to ten customers " + " ".join(f"with-condition-{n}" for n in range(600))  # one long line
    async with create_runtime(storage_path=":memory:", embedding_model="none") as rt:
        session = rt.session("over")
        history = [{"role": "system", "content": "You are the release assistant."},
                   {"role": "user", "content": decision}, {"role": "assistant", "content": "Noted."}] + _history(4)
        # The earlier conversation stored as such (brought whole on a first call, up to 12 messages
        # would be read as the client's fixed context: `memory.turn.align.fixed_context`).
        await session.sync_messages(history)
        first = await session.prepare_turn(history + [{"role": "user", "content": "ok"}], 4000)
        await session.commit_turn(first, {"role": "assistant", "content": "ok."})
        assert (await session.state())["decisions"]
        task = {"role": "user", "content": "Review this log: " + "line of the log " * 2000}  # alone over the budget
        messages = history + [{"role": "user", "content": "ok"}, {"role": "assistant", "content": "ok."}, task]
        plan = await session.prepare_turn(messages, 1000)
    assert plan.mode == "over_budget" and plan.layout.manifest["over_budget_by"] == plan.result.tokens - 1000
    sent = plan.messages
    assert sent[0] == history[0] and sent[-1] == task
    state = [m for m in sent if m.get("role") == "system" and "Session state" in str(m.get("content"))]
    assert len(state) == 1 and "ship the beta to ten customers" in state[0]["content"] and "…" in state[0]["content"]
    assert {"role": "assistant", "content": "ok."} in sent  # the newest turn within the floor


def test_a_request_is_its_messages_identity_not_their_wire_extras() -> None:
    asked = {"role": "user", "content": "Which service renders invoices?"}
    plain = {**asked, "x_anthropic": {"content": [{"type": "text", "text": asked["content"]}]}}
    marked = {**asked, "x_anthropic": {"content": [{"type": "text", "text": asked["content"], "cache_control": {"type": "ephemeral"}}]}}
    assert request_key([], "a", [plain], "m", 100) == request_key([], "a", [marked], "m", 100)  # a moved breakpoint
    assert request_key([], "a", [asked], "m", 100) != request_key([], "a", [{**asked, "content": "Which one?"}], "m", 100)
    assert request_key([], "a", [asked], "m", 100) != request_key([], "b", [asked], "m", 100)
    # Text that names the mark is text: kept in the key, whether or not a real mark rides along.
    naming = {"role": "user", "content": "Where do I set cache_control?"}
    assert request_key([], "a", [naming], "m", 100) != request_key([], "a", [{**naming, "content": "Where do I set it?"}], "m", 100)
    assert request_key([naming], "a", [plain], "m", 100) == request_key([naming], "a", [marked], "m", 100)


async def test_a_tool_step_reuses_the_evidence_of_the_request_that_opened_its_turn() -> None:
    call = {"role": "assistant", "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "read", "arguments": "{}"}}]}
    async with create_runtime(storage_path=":memory:", embedding_model="none") as rt:
        session = rt.session("steps")
        history = [{"role": "user", "content": "Remember: invoices are rendered by the quill-pdf service."},
                   {"role": "assistant", "content": "Noted."}] + _history(30)
        warm = [{"role": "user", "content": "Go on with the checklist."}, {"role": "assistant", "content": "Done."}]
        await session.commit_turn(await session.prepare_turn(history + warm[:1], 1500), warm[1])  # builds the frame
        history += warm
        question = {"role": "user", "content": "Which service renders the invoices?"}
        first = await session.prepare_turn(history + [question], 1500)
        assert first.mode == "frame"
        assert first.layout.evidence is not None and "quill-pdf" in str(first.layout.evidence["content"])
        await session.commit_turn(first, call)
        step = history + [question, call, {"role": "tool", "tool_call_id": "c1", "content": "quill_pdf.render(invoice) " * 3}]
        second = await session.prepare_turn(step, 1500)
    assert second.mode == "frame" and second.layout.evidence == first.layout.evidence
    assert [i for i in second.layout.manifest["included"] if i.get("kind") == "evidence"][0]["reason"] == "reused"


TOOLS = [{"type": "function", "function": {"name": f"tool_{n}", "description": "Does one thing well. " * 40,
                                           "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}} for n in range(4)]


async def test_the_declared_tools_count_toward_the_budget_as_part_of_the_fixed_part() -> None:
    tools = tools_tokens(TOOLS, COUNTER)
    assert 800 < tools < 2000 and tools_tokens(None, COUNTER) == tools_tokens([], COUNTER) == 0
    # 14 earlier messages: more than a first call can bring as fixed context (`memory.turn.align.fixed_context`).
    messages = _history(7) + [{"role": "user", "content": "And item 3?"}]
    one = tools_tokens(TOOLS[:1], COUNTER)
    budget = COUNTER.messages_tokens(messages) + one // 2  # the messages fit; with the tool they do not
    assert one < budget // 2
    async with create_runtime(storage_path=":memory:", embedding_model="none") as rt:
        bare = await rt.session("bare").prepare_turn(messages, budget)
        declared = await rt.session("declared").prepare_turn(messages, budget, tools=TOOLS[:1])
        agent = await rt.session("agent").prepare_turn(_history(30) + messages[-1:], 2000, tools=TOOLS * 2)
    assert bare.mode == "full_history" and declared.mode != "full_history"
    assert declared.result.tokens + one <= budget
    # Tools beyond half the budget go on top, like long instructions: the conversation keeps half.
    assert agent.mode != "over_budget" and agent.result.tokens <= 1000


async def test_a_retry_forwards_the_prompt_it_repeats_even_one_that_carried_no_evidence(tmp_path: Path) -> None:
    # Found by the property test: the first time, the rebased frame's base held the evidence and
    # nothing went after the window; at the retry, with the reply stored, a block did.
    said = [("deploy deploy deploy", "deploy deploy deploy"), ("deploy deploy deploy", "deploy deploy deploy"),
            ("deploy deploy deploy", "deploy deploy 42"), ("deploy deploy deploy", "deploy deploy deploy cache 42 42"),
            ("deploy " * 11 + "cache 42 漢字", "deploy deploy deploy"), ("deploy " * 14, "deploy deploy deploy")]
    system = {"role": "system", "content": "You are a careful assistant."}
    async with create_runtime(storage_path=tmp_path / "m.sqlite", embedding_model="none") as rt:
        session, history = rt.session("p"), []
        for text, answer in said:
            history.append({"role": "user", "content": text.strip()})
            request = [system, *history]
            plan = await session.prepare_turn(request, 120, model="gpt-4o-mini")
            await session.commit_turn(plan, {"role": "assistant", "content": answer})
            history.append({"role": "assistant", "content": answer})
        again = await session.prepare_turn(request, 120, model="gpt-4o-mini")
    assert plan.layout.evidence is None  # the frame's base held what it needed; nothing after the window
    assert again.messages == plan.messages


FEW_SHOT = [{"role": "user", "content": "Change get_factorial() to use math.factorial"},
            {"role": "assistant", "content": "Decision: use math.factorial from the standard library.\n\nmathweb/flask/app.py\n"
                                             "<<<<<<< SEARCH\ndef factorial(n):\n=======\nimport math\n>>>>>>> REPLACE"},
            {"role": "user", "content": "I switched to a new code base. Please don't consider the above files any longer."},
            {"role": "assistant", "content": "Ok."}]


def _files_message(edit: int) -> list[dict[str, Any]]:
    body = "".join(f"def helper_{i}(x):\n    return x * {i}\n\n" for i in range(20)) + f"# edit {edit}\n"
    return [{"role": "user", "content": f"I have *added these files to the chat*.\n\nnotes.py\n```\n{body}```"},
            {"role": "assistant", "content": "Ok, any changes I propose will be to those files."}]


async def test_a_named_sessions_few_shot_head_leaves_the_conversation_on_the_second_call() -> None:
    """aider's layout under a session header: the first call stores all it brings (it could be a
    conversation from before the proxy); the second shows the few-shot head and the files message
    as fixed context (`memory.turn.align.stored_head`), and they leave the conversation: the turns
    stay, in order, with their state; the head's state line goes; it never comes back as evidence."""
    system = {"role": "system", "content": "Act as an expert software developer."}
    turns = [("Decision: the deploy codename is heliotrope.", "Noted."), ("Which helper returns x times 7?", "helper_7."),
             ("Which math function computes the factorial?", "None yet."), ("What was the deploy codename?", "heliotrope")]
    async with create_runtime(storage_path=":memory:", embedding_model="none") as rt:
        session, history, plans = rt.session("aider"), [], []
        for n, (question, answer) in enumerate(turns):
            request = [system, *FEW_SHOT, *history, *_files_message(n), {"role": "user", "content": question}]
            plan = await session.prepare_turn(request, 4000 if n < 2 else 300)
            if n == 1:  # the call that moves the head out fails upstream and is sent again: nothing moves twice
                moved = (await session.export())["transcript"]
                plan_again = await session.prepare_turn(request, 4000)
                assert (await session.export())["transcript"] == moved and len(moved) == 2
                assert plan_again.messages == plan.messages
            await session.commit_turn(plan, {"role": "assistant", "content": answer})
            plans.append(plan)
            history += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
            if n == 0:  # stored as brought: the few-shot exchange and the files message are turns, for now
                assert len((await session.export())["transcript"]) == 8
        export = await session.export()
        state = await session.state()
        again = await session.prepare_turn(request, 300)  # a retry of the last call: nothing moves again
    live = [e for e in export["events"] if not e["detached"] and e["role"]]
    assert [e["content"] for e in live] == [text for pair in turns for text in pair]
    assert [d["text"] for d in state["decisions"]] == ["the deploy codename is heliotrope."]
    assert len(export["transcript"]) == 2 * len(turns)
    for plan in plans + [again]:  # the few-shot exchange goes up in its place, once; never quoted
        assert sum(m == FEW_SHOT[0] for m in plan.messages) == 1
        assert [m for m in plan.messages if "mathweb" in str(m.get("content"))] == [FEW_SHOT[1]]
    assert plans[3].layout.evidence is None or "mathweb" not in str(plans[3].layout.evidence["content"])
    assert again.messages == plans[3].messages


async def test_whether_the_history_holds_a_tool_step_is_kept_as_its_lines_are_built() -> None:
    """`TurnInputs.history_tools` (what `need.plain_chat` reads on the proxy path) says what a walk
    over the history's messages says, for lines from the request and lines from memory alike."""
    call = {"role": "assistant", "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "read", "arguments": "{}"}}]}
    chat, loop = _history(3), [{"role": "user", "content": "Read it."}, call, {"role": "tool", "tool_call_id": "c1", "content": "text"},
                               {"role": "assistant", "content": "Read."}]
    question = {"role": "user", "content": "And now?"}
    async with create_runtime(storage_path=":memory:", embedding_model="none") as rt:
        seen = []
        for name, stored, request in [("plain", chat, chat + [question]), ("loop", chat + loop, chat + loop + [question]),
                                      ("stateless", chat + loop, [question]), ("tail", chat, chat + loop[:3])]:
            session = rt.session(name)
            await session.sync_messages(stored)
            transcript = await rt.store.transcript(name)
            parsed = Request.of(request)
            inputs = turn_inputs(align_request(transcript, parsed, True), parsed, transcript, await rt.loaded_view(name), "gpt-4o-mini",
                                 4000, COUNTER)
            assert inputs.history_tools == uses_tools(line.message for line in inputs.history)
            seen.append((inputs.history_tools, plain_chat(inputs.tail, inputs.history_tools)))
    assert seen == [(False, True), (True, False), (True, False), (False, False)]
