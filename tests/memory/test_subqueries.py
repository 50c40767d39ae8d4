"""Questions that name several people (`memory.recall.subqueries`) and the fused ranking of their
sub-queries (`memory.recall.retrieval.rank_chunks`)."""

from __future__ import annotations

import pytest

from memory import create_runtime
from memory.recall.retrieval import RankOptions
from memory.recall.subqueries import MAX_SUBQUERIES, entity_queries


@pytest.mark.parametrize(("question", "queries"), [
    ("What type of volunteering have John and Maria both done?",
     ("What type of volunteering have John both done?", "What type of volunteering have Maria both done?")),
    ("Which of Caroline's and Melanie's pets are cats?", ("Which of Caroline's pets are cats?", "Which of Melanie's pets are cats?")),
    ("What color are both Kate and Elise's hair?", ("What color are both Kate's hair?", "What color are both Elise's hair?")),
    ("Which cities have both, Kate and Elise, been to?", ("Which cities have both, Kate, been to?", "Which cities have both, Elise, been to?")),
    ("What did Mel, Caroline and Jon see?", ("What did Mel see?", "What did Caroline see?", "What did Jon see?")),
    ("Caroline and Melanie went where?", ("Caroline went where?", "Melanie went where?")),
])
def test_entity_queries(question, queries):
    assert entity_queries(question) == queries


@pytest.mark.parametrize("question", [
    "What did John do and why?", "When did Melanie paint a sunrise?", "Is it salt and pepper?", "what about john and maria?",
])
def test_no_split_without_two_names_joined(question):
    assert entity_queries(question) == ()


def test_at_most_a_few_subqueries():
    assert len(entity_queries("Did Ann, Bob, Cid, Dan, Eve and Fay meet?")) == MAX_SUBQUERIES


async def _scores(path, options):
    """A chat where Maria talks about her volunteering at length and John once: asked of both."""
    async with create_runtime(storage_path=path, embedding_model="none", rank_options=options) as rt:
        session = rt.session("both")
        events = []
        for i in range(12):
            events.append({"type": "assistant_message", "payload": {"content": f"Maria: volunteering at the shelter again, day {i}, Maria loves it."}})
            events.append({"type": "user_message", "payload": {"content": f"John: nice. The bus was late today, number {i}."}})
        events.insert(3, {"type": "user_message", "payload": {"content": "John: I did some volunteering at the food bank."}})
        for i in range(20):
            events.append({"type": "user_message", "payload": {"content": f"John: unrelated chatter about the weather {i}."}})
        await session.ingest_many(events)
        result = await session.compile(user_message="What type of volunteering have John and Maria both done?", budget_tokens=300)
    items = result.manifest["included"] + result.manifest["dropped"]
    maria_turns = {n + 1 for n, e in enumerate(events) if e["payload"]["content"].startswith("Maria:")}
    john_turn = 1 + next(n for n, e in enumerate(events) if "food bank" in e["payload"]["content"])
    johns = [i["score"] for i in items if i.get("turn") == john_turn]
    marias = sorted((i["score"] for i in items if i.get("turn") in maria_turns), reverse=True)
    text = "\n".join(str(m["content"]) for m in result.messages)
    return johns[0] if johns else None, marias, "food bank" in text


async def test_each_name_gets_its_own_best_turns(tmp_path):
    john, marias, included = await _scores(tmp_path / "on.sqlite", RankOptions())
    assert included
    assert john is not None and john > marias[0]  # John's one turn stands with Maria's best


async def test_ranked_as_one_query_the_louder_name_crowds_the_other_out(tmp_path):
    john, marias, included = await _scores(tmp_path / "off.sqlite", RankOptions(split_entities=False))
    assert not included
    assert john is None or john < marias[0]
