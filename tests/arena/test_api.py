"""The arena over real HTTP, on SQLite and PostgreSQL, against a real execution service."""

import json
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.arena.conftest import MODELS, StartArena, battle_pairs, login, wait_turns


def battle_with_turn(
    client: httpx.Client,
    auth: dict[str, str],
    scene: str = "table",
    instruction: str = "pick up the red cube",
) -> dict[str, Any]:
    battle = client.post("/api/battles", json={"scene_id": scene}, headers=auth).json()
    reply = client.post(
        f"/api/battles/{battle['battle_id']}/turns", headers=auth, json={"instruction": instruction}
    )
    assert reply.status_code == 202, reply.text
    return wait_turns(client, battle["battle_id"])


def test_a_battle_from_session_to_leaderboard(start_arena: StartArena) -> None:
    client = start_arena()
    auth = login(client)
    reply = client.post("/api/battles", json={"scene_id": "table"}, headers=auth)
    assert reply.status_code == 201, reply.text
    battle = reply.json()
    assert battle["status"] == "new"
    assert battle["model_a"] is None
    assert battle["model_b"] is None

    battle_id = battle["battle_id"]
    reply = client.post(
        f"/api/battles/{battle_id}/turns",
        headers=auth,
        json={"instruction": "  pick up   the red cube "},
    )
    assert reply.status_code == 202, reply.text
    turn = reply.json()["turns"][0]
    assert turn["instruction"] == "pick up the red cube"
    assert turn["status"] in ("queued", "running")

    battle = wait_turns(client, battle_id)
    assert battle["status"] == "ready"
    (turn,) = battle["turns"]
    assert turn["status"] == "done"
    assert turn["error"] is None
    assert [e["side"] for e in turn["episodes"]] == ["a", "b"]
    assert all(e["model_id"] is None and e["success"] is None for e in turn["episodes"])

    replays = [client.get(e["replay_url"]).json() for e in turn["episodes"]]
    assert replays[0]["initial_qpos"] == replays[1]["initial_qpos"]  # same start state
    assert replays[0]["seed"] == replays[1]["seed"] == turn["seed"]
    for replay in replays:
        assert replay["model_id"] is None
        assert replay["success"] is None
        assert replay["revealed"] is None
        assert len(replay["qpos"]) == replay["num_steps"] == len(replay["actions"])
        assert replay["scene_id"] == "table"

    reply = client.post(f"/api/battles/{battle_id}/vote", json={"choice": "a"}, headers=auth)
    assert reply.status_code == 200, reply.text
    voted = reply.json()
    assert voted["status"] == "voted"
    assert voted["vote"] == "a"
    assert voted["model_a"] in MODELS
    assert voted["model_b"] in MODELS
    assert voted["model_a"] != voted["model_b"]
    episodes = voted["turns"][0]["episodes"]
    assert {e["model_id"] for e in episodes} == {voted["model_a"], voted["model_b"]}
    successes = {e["model_id"]: e["success"] for e in episodes}
    assert successes == {m: m == "scripted-expert" for m in successes}  # only the expert lifts
    revealed = client.get(episodes[0]["replay_url"]).json()
    assert revealed["model_id"] == voted["model_a"]
    assert revealed["revealed"]["metadata"]["num_steps"] == revealed["num_steps"]

    board = client.get("/api/leaderboard").json()
    assert board["votes"] == 1
    rows = {r["model"]: r for r in board["ratings"]}
    assert rows[voted["model_a"]]["wins"] == 1
    assert rows[voted["model_b"]]["losses"] == 1
    assert rows[voted["model_a"]]["rating"] > rows[voted["model_b"]]["rating"]
    assert rows[voted["model_a"]]["sim_success"]["n"] == 1

    lines = client.get("/api/export/episodes").text.splitlines()
    records = [json.loads(line) for line in lines]
    assert {(r["battle_id"], r["side"]) for r in records} == {(battle_id, "a"), (battle_id, "b")}
    assert records[0]["episode"]["states"]
    (vote,) = [json.loads(line) for line in client.get("/api/export/votes").text.splitlines()]
    assert vote == vote | {"battle_id": battle_id, "choice": "a", "model_a": voted["model_a"]}
    (exported,) = [json.loads(x) for x in client.get("/api/export/battles").text.splitlines()]
    assert exported["turns"][0]["seed"] == turn["seed"]


def test_turns_are_idempotent(start_arena: StartArena) -> None:
    client = start_arena()
    auth = login(client)
    battle_id = client.post("/api/battles", json={}, headers=auth).json()["battle_id"]
    url = f"/api/battles/{battle_id}/turns"
    body = {"instruction": "touch the blue cube"}
    key = {"Idempotency-Key": "retry-me"}
    with ThreadPoolExecutor(4) as pool:  # the same request, four times at once
        replies = list(
            pool.map(lambda _: client.post(url, json=body, headers=auth | key), range(4))
        )
    assert sorted(r.status_code for r in replies) == [200, 200, 200, 202], [r.text for r in replies]
    battle = wait_turns(client, battle_id)
    assert len(battle["turns"]) == 1
    again = client.post(url, json=body, headers=auth | key)
    assert again.status_code == 200
    assert len(again.json()["turns"]) == 1
    other = client.post(url, json={"instruction": "touch the red cube"}, headers=auth | key)
    assert other.status_code == 409
    assert other.json()["error"] == "conflict"
    second = client.post(url, json=body, headers=auth | {"Idempotency-Key": "another"})
    assert second.status_code == 202
    assert [t["number"] for t in wait_turns(client, battle_id)["turns"]] == [1, 2]


def test_votes_are_one_per_battle_and_need_the_owner(start_arena: StartArena) -> None:
    client = start_arena()
    auth, stranger = login(client), login(client)
    battle_id = client.post("/api/battles", json={}, headers=auth).json()["battle_id"]
    url = f"/api/battles/{battle_id}/vote"
    early = client.post(url, json={"choice": "a"}, headers=auth)
    assert early.status_code == 409
    assert "no turn" in early.json()["detail"]
    client.post(
        f"/api/battles/{battle_id}/turns", json={"instruction": "touch the red cube"}, headers=auth
    )
    wait_turns(client, battle_id)
    cases = [
        ({"choice": "a"}, {}, 401, "unauthorized"),
        ({"choice": "a"}, {"Authorization": "Bearer nope"}, 401, "unauthorized"),
        ({"choice": "a"}, stranger, 403, "forbidden"),
        ({"choice": "maybe"}, auth, 422, "invalid_request"),
    ]
    for body, headers, status, error in cases:
        reply = client.post(url, json=body, headers=headers)
        assert (reply.status_code, reply.json()["error"]) == (status, error), reply.text
    with ThreadPoolExecutor(3) as pool:
        replies = list(
            pool.map(
                lambda c: client.post(url, json={"choice": c}, headers=auth),
                ["tie", "both_bad", "b"],
            )
        )
    assert sorted(r.status_code for r in replies) == [200, 409, 409]
    assert client.get("/api/leaderboard").json()["votes"] == 1
    more = client.post(
        f"/api/battles/{battle_id}/turns", json={"instruction": "touch the red cube"}, headers=auth
    )
    assert more.status_code == 409
    assert "voted" in more.json()["detail"]


@pytest.mark.parametrize(
    ("path", "body", "status", "error", "detail"),
    [
        ("battles", {"scene_id": "kitchen"}, 422, "invalid_request", "valid: table, bin"),
        ("turns", {"instruction": "x" * 201}, 422, "invalid_request", "1 to 200 characters"),
        ("turns", {"instruction": "   "}, 422, "invalid_request", "1 to 200 characters"),
        ("turns", {"instruction": "x" * 501}, 422, "invalid_request", "instruction"),
        (
            "turns",
            {"instruction": "put the red cube in the bin"},
            422,
            "invalid_request",
            "needs a bin",
        ),
        ("turns", {}, 422, "invalid_request", "instruction: Field required"),
        ("turns", {"instruction": "touch the\u0000red cube"}, 422, "invalid_request", "control"),
        ("missing", {"instruction": "touch the red cube"}, 404, "not_found", "unknown battle"),
    ],
)
def test_bad_input_gets_a_json_error(
    start_arena: StartArena, path: str, body: dict[str, Any], status: int, error: str, detail: str
) -> None:
    client = start_arena()
    auth = login(client)
    battle = client.post("/api/battles", json={}, headers=auth).json()
    url = {
        "battles": "/api/battles",
        "turns": f"/api/battles/{battle['battle_id']}/turns",
        "missing": "/api/battles/0123/turns",
    }[path]
    reply = client.post(url, json=body, headers=auth)
    assert reply.status_code == status, reply.text
    assert reply.json()["error"] == error
    assert detail in reply.json()["detail"]
    for model in MODELS:  # an error never names the hidden models
        assert model not in reply.json()["detail"]


def test_turns_per_battle_are_capped(start_arena: StartArena) -> None:
    client = start_arena(max_turns_per_battle=2)
    auth = login(client)
    battle_id = client.post("/api/battles", json={}, headers=auth).json()["battle_id"]
    for _ in range(2):
        client.post(
            f"/api/battles/{battle_id}/turns",
            json={"instruction": "touch the red cube"},
            headers=auth,
        )
        wait_turns(client, battle_id)
    third = client.post(
        f"/api/battles/{battle_id}/turns", json={"instruction": "touch the red cube"}, headers=auth
    )
    assert third.status_code == 409
    assert "at most 2 turns" in third.json()["detail"]


def test_models_are_drawn_fairly_and_open_battles_stay_secret(
    start_arena: StartArena, database_url: str
) -> None:
    client = start_arena()
    auth = login(client)
    for _ in range(30):
        battle = client.post("/api/battles", json={}, headers=auth).json()
        assert battle["model_a"] is None
    assert client.get("/api/leaderboard").json()["ratings"] == []  # nothing about open battles
    pairs = battle_pairs(database_url)
    assert all(a != b for a, b in pairs)
    counts = Counter(frozenset(pair) for pair in pairs)
    assert len(counts) == 3  # without votes every pair is as uncertain: all are drawn
    assert min(counts.values()) >= 4
    assert len(set(pairs)) == 6  # every pair, in both orders


def test_models_are_never_paired_with_themselves_and_sides_vary(start_arena: StartArena) -> None:
    client = start_arena(models="scripted-expert,vla-flow-tiny-random")
    auth = login(client)
    seen = set()
    for _ in range(8):
        battle = battle_with_turn(client, auth, instruction="touch the red cube")
        voted = client.post(
            f"/api/battles/{battle['battle_id']}/vote", json={"choice": "tie"}, headers=auth
        ).json()
        assert voted["model_a"] != voted["model_b"]
        seen.add((voted["model_a"], voted["model_b"]))
    assert seen == {
        ("scripted-expert", "vla-flow-tiny-random"),
        ("vla-flow-tiny-random", "scripted-expert"),
    }


def test_rate_limits_answer_429_with_retry_after(start_arena: StartArena) -> None:
    client = start_arena(battle_rate="2/minute", session_rate="3/minute")
    auth = login(client)
    codes = [client.post("/api/battles", json={}, headers=auth).status_code for _ in range(3)]
    assert codes == [201, 201, 429]
    limited = client.post("/api/battles", json={}, headers=auth)
    assert limited.json()["error"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) >= 1
    login(client), login(client)  # the IP's session budget: 3 per minute, one already used
    assert client.post("/api/sessions").status_code == 429


def test_the_leaderboard_reports_sim_success_and_agreement(start_arena: StartArena) -> None:
    client = start_arena(models="scripted-expert,vla-flow-tiny-random")
    auth = login(client)
    for _ in range(3):
        battle = battle_with_turn(client, auth)
        sides = {e["side"]: e for e in battle["turns"][0]["episodes"]}
        hidden = client.post(
            f"/api/battles/{battle['battle_id']}/vote", json={"choice": "tie"}, headers=auth
        ).json()
        assert {e["model_id"] for e in hidden["turns"][0]["episodes"]} == {
            "scripted-expert",
            "vla-flow-tiny-random",
        }
        assert set(sides) == {"a", "b"}
    agreeing = 0
    for _ in range(4):  # "a" agrees with the simulator when the expert played side a
        battle = battle_with_turn(client, auth)
        bid = battle["battle_id"]
        reveal = client.post(f"/api/battles/{bid}/vote", json={"choice": "a"}, headers=auth)
        agreeing += reveal.json()["model_a"] == "scripted-expert"
    board = client.get("/api/leaderboard").json()
    rows = {r["model"]: r for r in board["ratings"]}
    expert = rows["scripted-expert"]["sim_success"]
    assert expert["n"] == 7
    assert expert["value"] == 1.0
    assert expert["ci_low"] > 0.5
    assert rows["vla-flow-tiny-random"]["sim_success"]["value"] == 0.0
    assert board["agreement"]["n"] == 4  # ties are not a/b votes
    assert board["agreement"]["value"] == agreeing / 4
    assert board["tie_parameter"] > 0


def test_oversized_bodies_and_out_of_range_paths_get_json_errors(start_arena: StartArena) -> None:
    client = start_arena()
    auth = login(client)
    battle_id = client.post("/api/battles", json={}, headers=auth).json()["battle_id"]
    url = f"/api/battles/{battle_id}/turns"
    huge = client.post(url, content=b'{"instruction": "' + b"x" * 20_000 + b'"}', headers=auth)
    assert huge.status_code == 413
    assert huge.json()["error"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit counts what streams in
        yield b'{"instruction": "'
        for _ in range(40):
            yield b"x" * 1000
        yield b'"}'

    streamed = client.post(url, content=chunks(), headers=auth)
    assert streamed.status_code == 413
    small = client.post(
        url,
        content=iter([b'{"instruction": ', b'"touch the red cube"}']),
        headers=auth | {"content-type": "application/json"},
    )
    assert small.status_code == 202, small.text
    far = client.get(f"/api/battles/{battle_id}/turns/{2**63}/episodes/a")
    assert far.status_code == 422
    assert far.json()["error"] == "invalid_request"
    missing = client.get(f"/api/battles/{battle_id}/turns/7/episodes/a")
    assert missing.status_code == 404


def test_export_can_require_the_admin_token_and_openapi_lists_the_api(
    start_arena: StartArena,
) -> None:
    client = start_arena(admin_token="s3cret")
    assert client.get("/api/export/votes").status_code == 401
    wrong = client.get("/api/export/votes", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "unauthorized"
    ok = client.get("/api/export/votes", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    assert ok.headers["content-type"].startswith("application/x-ndjson")
    assert client.get("/api/export/sessions").status_code == 422
    paths = client.get("/openapi.json").json()["paths"]
    assert {
        "/api/sessions",
        "/api/battles",
        "/api/battles/{battle_id}/turns",
        "/api/battles/{battle_id}/vote",
        "/api/leaderboard",
        "/api/export/{kind}",
        "/api/battles/{battle_id}/turns/{number}/episodes/{side}",
    } <= set(paths)
    assert "409" in paths["/api/battles/{battle_id}/vote"]["post"]["responses"]


def test_votes_carry_progress_scores_and_a_reason(start_arena: StartArena) -> None:
    client = start_arena()
    auth = login(client)
    battle = battle_with_turn(client, auth)
    url = f"/api/battles/{battle['battle_id']}/vote"
    for bad in (
        {"score_a": 101},
        {"score_b": -1},
        {"reason": "x" * 281},
        {"score_a": "lots"},
        {"reason": "nul\u0000byte"},  # PostgreSQL cannot store it: refused, not a 500
    ):
        reply = client.post(url, json={"choice": "a"} | bad, headers=auth)
        assert (reply.status_code, reply.json()["error"]) == (422, "invalid_request"), bad
    body = {"choice": "a", "score_a": 80, "score_b": 10, "reason": "  A lifted it; B wandered  "}
    voted = client.post(url, json=body, headers=auth).json()
    given = {"score_a": 80, "score_b": 10, "reason": "A lifted it; B wandered"}
    assert voted == voted | given
    assert voted["turns"][0]["task"] == "lift"
    assert client.get(f"/api/battles/{battle['battle_id']}").json() == voted
    (vote,) = [json.loads(line) for line in client.get("/api/export/votes").text.splitlines()]
    assert vote == vote | given
    (exported,) = [json.loads(x) for x in client.get("/api/export/battles").text.splitlines()]
    assert exported == exported | given
    assert exported["turns"][0]["task"] == "lift"

    other = battle_with_turn(client, auth)
    plain = client.post(
        f"/api/battles/{other['battle_id']}/vote",
        json={"choice": "tie", "reason": "   "},  # a blank reason is none
        headers=auth,
    ).json()
    assert (plain["score_a"], plain["score_b"], plain["reason"]) == (None, None, None)


def test_boards_by_task_and_scene_with_matrices(start_arena: StartArena) -> None:
    client = start_arena(models="scripted-expert,vla-flow-tiny-random")
    auth = login(client)
    played = [
        ("table", "touch the red cube", "a"),
        ("table", "pick up the red cube", "tie"),
        ("bin", "touch the blue cube", "b"),
    ]
    for scene, instruction, choice in played:
        battle = battle_with_turn(client, auth, scene, instruction)
        client.post(
            f"/api/battles/{battle['battle_id']}/vote", json={"choice": choice}, headers=auth
        )

    def board(**query: str) -> dict[str, Any]:
        reply = client.get("/api/leaderboard", params=query)
        assert reply.status_code == 200, reply.text
        return dict(reply.json())

    overall = board()
    assert (overall["task"], overall["scene"], overall["votes"]) == (None, None, 3)
    assert overall["task_kinds"] == ["lift", "touch"]
    assert overall["scene_ids"] == ["table", "bin"]
    assert all(r["provisional"] for r in overall["ratings"])  # 3 votes, under the threshold
    assert overall["provisional_votes"] == 20
    filtered = [
        ({"task": "touch"}, 2),
        ({"task": "lift"}, 1),
        ({"scene": "bin"}, 1),
        ({"task": "touch", "scene": "bin"}, 1),
    ]
    for query, votes in filtered:
        assert board(**query)["votes"] == votes, query
    touch = board(task="touch")
    assert touch["task"] == "touch"
    for row in touch["ratings"]:  # sim success counts the touch episodes only
        assert row["sim_success"]["n"] == 2
        assert row["battles"] == 2
    lift = board(task="lift")
    expert = next(r for r in lift["ratings"] if r["model"] == "scripted-expert")
    assert expert["sim_success"] == expert["sim_success"] | {"n": 1, "value": 1.0}

    matrix = overall["matrix"]
    assert matrix["models"] == [r["model"] for r in overall["ratings"]]
    assert matrix["battles"] == [[0, 3], [3, 0]]
    (i, j) = (0, 1)
    assert matrix["win_rate"][i][i] is None
    assert matrix["win_rate"][i][j] + matrix["win_rate"][j][i] == pytest.approx(1.0)
    wins = {r["model"]: r["wins"] + r["ties"] / 2 for r in overall["ratings"]}
    assert matrix["win_rate"][i][j] == pytest.approx(wins[matrix["models"][i]] / 3)
    # Per model, the votes that went with the simulator where the sides' successes differed.
    for row in overall["ratings"]:
        assert row["agreement"] == overall["agreement"]  # two models: the same battles

    for query, status, detail in (
        ({"task": "stack"}, 404, "valid: lift, touch"),
        ({"scene": "kitchen"}, 404, "valid: bin, table"),
        ({"task": "DROP TABLE"}, 422, "task"),
    ):
        reply = client.get("/api/leaderboard", params=query)
        assert (reply.status_code, reply.json()["error"] != "") == (status, True), reply.text
        assert detail in reply.json()["detail"]


def test_model_cards_show_family_training_latency_and_rating(start_arena: StartArena) -> None:
    client = start_arena()
    cards = {c["model_id"]: c for c in client.get("/api/models").json()}
    assert set(cards) == set(MODELS)
    flow = cards["vla-flow-tiny-random"]
    assert (flow["kind"], flow["family"]) == ("preset", "vla-flow")
    assert flow["parameters"] > 1000
    assert (flow["rating"], flow["latency_ms"], flow["latency_episodes"]) == (None, None, 0)
    assert cards["scripted-expert"]["kind"] == "expert"

    auth = login(client)
    battle = battle_with_turn(client, auth, instruction="touch the red cube")
    voted = client.post(
        f"/api/battles/{battle['battle_id']}/vote", json={"choice": "a"}, headers=auth
    ).json()
    cards = {c["model_id"]: c for c in client.get("/api/models").json()}
    first = cards[voted["model_a"]]
    assert first["rating"]["wins"] == 1
    assert next(iter(cards)) == voted["model_a"]  # best rated first
    for model in (voted["model_a"], voted["model_b"]):
        learned = model != "scripted-expert"  # the expert makes no model calls
        assert (cards[model]["latency_ms"] is not None) == learned
        assert cards[model]["latency_episodes"] == int(learned)
