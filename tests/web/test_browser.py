"""The whole stack in a real browser: Debian's chromium, headless, driven by Playwright."""

import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Route, sync_playwright

from vlarena.arena.settings import WEB_DIR
from vlarena.stack import StackPorts, stack
from vlarena.testing import free_port

CHROMIUM = os.environ.get("VLA_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("VLA_TEST_ARTIFACTS", "test-artifacts"))
pytestmark = pytest.mark.slow
# The arena's Content-Security-Policy is enforced: what it blocks is logged as a console error.
REPORT_CSP = """document.addEventListener("securitypolicyviolation", (e) =>
  console.error(`CSP blocked ${e.blockedURI} (${e.violatedDirective})`));"""
BOTH_READY = "canvas.replay[data-ready] >> nth=1"  # the first frame of both replays is drawn
REVEALED = "#reveal:has-text('was')"
# Requests the test makes fail on purpose (chromium logs a failed fetch as a console error).
EXPECTED_FAILURES = ("/api/leaderboard?task=juggle",)
AXE = Path(__file__).resolve().parents[2] / "web" / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture(scope="module")
def arena_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`vlarena up`'s stack on free ports: inference server, execution service, arena + UI."""
    assert (WEB_DIR / "index.html").is_file(), "the web UI is not built: run make install"
    ports = StackPorts(free_port(), free_port(), free_port(), free_port())
    database = tmp_path_factory.mktemp("arena") / "arena.db"
    with stack(ports, f"sqlite+aiosqlite:///{database}") as running:
        yield running.url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert shutil.which(CHROMIUM), f"{CHROMIUM} is missing: make install puts Debian's chromium"
    with sync_playwright() as playwright:
        # Software WebGL: no GPU on the test machines.
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--use-angle=swiftshader", "--enable-unsafe-swiftshader"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.add_init_script(REPORT_CSP)
    errors: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if message.type == "error" and not message.location["url"].endswith(EXPECTED_FAILURES):
            errors.append(f"{message.text} ({message.location['url']})")

    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", console)
    yield page
    page.close()
    assert errors == [], errors  # CSP violations included


def audit(page: Page, where: str) -> None:
    """axe-core on the page as it is now: no serious or critical accessibility violations.

    Evaluated through the DevTools protocol: an injected <script> (add_script_tag) would be
    inline, which the arena's CSP rightly refuses (and the CSP reporter would fail the test).
    """
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(AXE.read_text() + "\n;0")
    violations = page.evaluate(
        """() => axe.run(document, { resultTypes: ["violations"] }).then((r) => r.violations.map(
             (v) => ({ id: v.id, impact: v.impact, help: v.help,
                       nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" ")) })))"""
    )
    bad = [v for v in violations if v["impact"] in ("serious", "critical")]
    assert bad == [], f"{where}: {bad}"


def play_through(page: Page) -> None:
    """Play the shown turn from the start at 4x until the vote opens (both replays watched)."""
    page.select_option("#speed", "4")
    page.fill("#seek", "0")
    if page.text_content("#play") != "Pause":
        page.click("#play")
    page.wait_for_selector("button[data-choice=a]:enabled", timeout=60_000)


def record_posts(page: Page) -> list[str]:
    """The paths the page POSTs to, recorded as the requests are sent."""
    posts: list[str] = []
    page.on("request", lambda r: posts.append(urlsplit(r.url).path) if r.method == "POST" else None)
    return posts


def held_back(page: Page, pattern: str, action: Callable[[], object]) -> Route:
    """Do `action` and return its first request to `pattern`, held until `.continue_()`."""
    held: list[Route] = []

    def hold_first(route: Route) -> None:
        if held:
            route.continue_()
        else:
            held.append(route)

    page.route(pattern, hold_first)
    action()
    while not held:
        page.wait_for_timeout(20)
    return held[0]


def votes_sent(posts: list[str]) -> int:
    return sum(path.endswith("/vote") for path in posts)


def no_sideways_scroll(page: Page, width: int) -> None:
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"{page.url}: the page is {scroll} px wide in a {width} px viewport"


def test_a_battle_in_the_browser(page: Page, arena_url: str) -> None:
    started = time.monotonic()
    api = httpx.Client(base_url=arena_url, timeout=60)
    votes_before = api.get("api/leaderboard").json()["votes"]
    posts = record_posts(page)
    response = page.goto(arena_url)
    assert response is not None
    assert "wasm-unsafe-eval" in response.headers["content-security-policy"]  # and it loads
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    # The page says what the arena is, has a favicon the arena serves, and examples of
    # every colour.
    assert "anonymous" in (page.text_content(".intro") or "")
    icon = page.get_attribute("link[rel=icon]", "href") or ""
    assert icon.startswith("/assets/"), icon
    served = api.get(icon.lstrip("/"))
    assert served.status_code == 200
    assert "svg" in served.headers["content-type"]
    for colour in ("red", "green", "blue"):
        assert page.locator(f"button.example >> text='pick up the {colour} cube'").count() == 1
    page.click("button.example >> text='pick up the red cube'")
    assert page.input_value("#instruction") == "pick up the red cube"
    page.click("#run")
    canvases = page.locator("canvas.replay[data-ready]")  # the first frame is drawn
    page.wait_for_selector(BOTH_READY, state="attached", timeout=120_000)
    assert page.locator(".side-label").all_text_contents() == ["Model A", "Model B"]
    battle_id = page.url.rsplit("/", 1)[-1]
    assert page.is_disabled("button[data-choice=a]")  # not before the replays have played

    # Both replays really render from the recorded states: the pixels at the start and at
    # the end of the shared timeline differ (seeking pauses nothing: set both ends).
    if page.text_content("#play") == "Pause":
        page.click("#play")
    shots: dict[str, list[bytes]] = {"start": [], "end": []}
    for position, value in (("start", "0"), ("end", "1000")):
        page.fill("#seek", value)
        page.wait_for_timeout(300)
        shots[position] = [canvas.screenshot() for canvas in canvases.all()]
    for start, end in zip(shots["start"], shots["end"], strict=True):
        assert start != end
    assert page.is_disabled("button[data-choice=a]")  # seeking to the end is not watching

    # The camera toggle: MuJoCo's front and wrist cameras show other pictures than the orbit
    # view, in both panes.
    views = {}
    for camera in ("free", "front", "wrist"):
        page.select_option("#camera", camera)
        page.wait_for_timeout(200)
        views[camera] = [canvas.screenshot() for canvas in canvases.all()]
        if camera != "free":
            page.locator(".panes").screenshot(path=str(ARTIFACTS / f"camera-{camera}.png"))
    for side in (0, 1):
        assert len({views[c][side] for c in views}) == 3, "the views look the same"
    page.select_option("#camera", "free")
    page.screenshot(path=str(ARTIFACTS / "battle.png"), full_page=True)

    # Play from the start at 4x: the picture moves while it plays, then the vote and the
    # next turn open.
    page.fill("#seek", "0")
    page.select_option("#speed", "4")
    page.click("#play")
    first = canvases.first.screenshot()
    page.wait_for_timeout(700)
    assert canvases.first.screenshot() != first
    page.wait_for_selector("button[data-choice=a]:enabled", timeout=60_000)

    # A second turn for the same pair; then both turns can be replayed.
    assert (page.text_content("#run") or "").startswith("Run turn 2 of")
    page.fill("#instruction", "touch the green cube")
    page.click("#run")
    # While turn 2 is sent, queued and run, the vote is shut: its buttons and key 1.
    assert page.is_disabled("button[data-choice=a]")
    page.keyboard.press("1")
    page.wait_for_timeout(300)
    assert page.is_disabled("button[data-choice=a]")
    page.wait_for_selector(".panes[data-turn='2']", state="attached", timeout=120_000)
    assert page.locator("#turns button.turn").count() == 2
    assert "touch the green cube" in (page.text_content("#turn-title") or "")
    play_through(page)
    page.click("button.turn[data-turn='1']")
    page.wait_for_selector(".panes[data-turn='1']", state="attached")
    assert page.get_attribute("button.turn[data-turn='1']", "aria-pressed") == "true"
    assert "pick up the red cube" in (page.text_content("#turn-title") or "")

    # The richer vote: a score, a reason, and key 1 (ignored while typing in a text field).
    page.fill("#score-a", "70")
    page.click("#reason")
    page.keyboard.type("A lifted the cube; B only reached it, 1 try")
    assert page.locator("#reveal p").count() == 0  # typing "1" there did not vote
    assert votes_sent(posts) == 0
    assert page.is_enabled("button[data-choice=a]")
    page.evaluate("document.activeElement.blur()")
    page.keyboard.press("1")
    page.wait_for_selector(REVEALED)
    reveal = page.text_content("#reveal") or ""
    assert "You voted for A. A was " in reveal
    assert "Turn 1 (“pick up the red cube”): A " in reveal
    assert "Turn 2 (“touch the green cube”): A " in reveal
    assert "Progress scores: A 70/100, B not given." in reveal
    assert "“A lifted the cube; B only reached it, 1 try”" in reveal
    assert page.locator("#reveal .badge").count() == 4  # one per side and turn
    battle = api.get(f"api/battles/{battle_id}").json()
    assert (battle["vote"], battle["score_a"], battle["score_b"]) == ("a", 70, None)
    assert battle["reason"] == "A lifted the cube; B only reached it, 1 try"
    assert [t["task"] for t in battle["turns"]] == ["lift", "touch"]
    assert f"A was {battle['model_a']}" in reveal
    assert f"B was {battle['model_b']}" in reveal
    page.screenshot(path=str(ARTIFACTS / "reveal.png"), full_page=True)
    audit(page, "the battle page after the reveal")
    permalink = page.url

    # The leaderboard: ratings with agreement and provisional badges, the chart, the matrices.
    page.goto(f"{arena_url}#/leaderboard")
    page.wait_for_selector("#leaderboard tbody tr")
    board = api.get("api/leaderboard").json()
    assert (page.text_content("#votes") or "").startswith(f"{votes_before + 1} vote")
    models = len(board["ratings"])
    assert page.locator("#rating-chart circle").count() == models >= 2
    assert page.locator("#leaderboard td.agreement").count() == models
    provisional = sum(r["provisional"] for r in board["ratings"])
    assert page.locator("#leaderboard .badge.provisional").count() == provisional > 0
    assert str(board["provisional_votes"]) in (page.text_content("#provisional-note") or "")
    for matrix in ("#winrate-matrix", "#battles-matrix"):
        assert page.locator(f"{matrix} caption").count() == 1
        assert page.locator(f"{matrix} tbody tr").count() == len(board["matrix"]["models"])
    winner, loser = (board["matrix"]["models"].index(battle[f"model_{s}"]) for s in "ab")
    cell = page.locator(f"#winrate-matrix tbody tr >> nth={winner}").locator("td").nth(loser)
    rate = board["matrix"]["win_rate"][winner][loser]
    assert rate > 0  # this vote went to the row model
    assert cell.text_content() == f"{math.floor(rate * 100 + 0.5)}%"
    page.screenshot(path=str(ARTIFACTS / "leaderboard.png"), full_page=True)
    audit(page, "the leaderboard")

    # Per task: a kind this battle played; the filter lives in the hash.
    page.select_option("#task-filter", "touch")
    page.wait_for_url("**#/leaderboard?task=touch")
    page.wait_for_selector("h1:has-text('touch') >> nth=0")
    page.wait_for_selector("#leaderboard tbody tr")
    assert page.input_value("#task-filter") == "touch"
    assert page.evaluate("document.activeElement.id") == "task-filter"  # focus kept on the filter
    page.goto(f"{arena_url}#/leaderboard?task=juggle")  # unknown: the API's detail is shown
    page.wait_for_selector("#board-status.error")
    assert "juggle" in (page.text_content("#board-status") or "")

    # Model cards: one per model, the voted ones rated.
    cards = api.get("api/models").json()
    page.click("header nav a[href='#/models']")
    page.wait_for_selector(".model-card")
    page.wait_for_function("document.activeElement?.tagName === 'H1'")  # focus moved to the page
    assert page.locator(".model-card").count() == len(cards)
    rated = page.locator(f".model-card[data-model='{battle['model_a']}']")
    assert "rank" in (rated.text_content() or "")
    assert "Latency here" in (rated.text_content() or "")
    page.screenshot(path=str(ARTIFACTS / "models.png"), full_page=True)
    audit(page, "the model cards")

    # 390 px wide: the panes stack, nothing scrolls sideways; a past battle replays from its
    # URL, revealed.
    page.set_viewport_size({"width": 390, "height": 844})
    for url in (f"{arena_url}#/leaderboard", f"{arena_url}#/models"):
        page.goto(url)
        page.wait_for_selector("#leaderboard, .model-card")
        no_sideways_scroll(page, 390)
    page.goto(permalink)
    page.wait_for_selector(REVEALED)
    page.wait_for_selector(BOTH_READY, state="attached", timeout=60_000)
    assert page.locator("canvas.replay").count() == 2
    a, b = (c.bounding_box() for c in page.locator("canvas.replay").all())
    assert a is not None
    assert b is not None
    assert b["y"] >= a["y"] + a["height"]
    no_sideways_scroll(page, 390)
    page.screenshot(path=str(ARTIFACTS / "mobile.png"), full_page=True)
    audit(page, "the battle page at 390 px")
    print(f"browser battle test: {time.monotonic() - started:.0f} s")


def finished_battle(arena_url: str, instruction: str) -> str:
    """A battle with one finished turn, made through the API; returns its permalink."""
    with httpx.Client(base_url=arena_url, timeout=120) as client:
        token = client.post("api/sessions").json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        battle_id = client.post("api/battles", json={}, headers=auth).json()["battle_id"]
        client.post(
            f"api/battles/{battle_id}/turns", json={"instruction": instruction}, headers=auth
        )
        deadline = time.monotonic() + 120
        while (battle := client.get(f"api/battles/{battle_id}").json())["status"] != "ready":
            assert battle["status"] != "failed", battle["turns"][-1]["error"]
            assert time.monotonic() < deadline, battle["status"]
            time.sleep(0.2)
    return f"{arena_url}#/battles/{battle_id}"


def test_memory_stays_bounded_over_many_battles(page: Page, arena_url: str) -> None:
    links = [
        finished_battle(arena_url, text) for text in ("touch the red cube", "pick up the blue cube")
    ]
    heap = []
    for round_ in range(16):  # 32 replays built and freed
        page.goto(links[round_ % 2])
        page.wait_for_selector(BOTH_READY, state="attached", timeout=60_000)
        stats = page.evaluate("window.vlarenaStats")
        assert stats["liveReplays"] == 2  # the previous battle's two were deleted
        heap.append(stats["wasmHeapBytes"])
    # WebAssembly memory never shrinks. Without the deletes it would grow by the models' size
    # every round; with them it grows once (allocator slack), then stays flat.
    assert len(set(heap[len(heap) // 2 :])) == 1, heap
    assert heap[-1] <= 2 * heap[0], heap


def test_stale_and_loading_pages_stay_quiet(page: Page, arena_url: str) -> None:
    """Run waits while a permalink loads; a page left behind neither votes, sends a turn, nor
    changes the URL. At 390 px an unvoted battle, vote form and all, does not scroll sideways."""
    permalink = finished_battle(arena_url, "touch the red cube")
    posts = record_posts(page)
    page.set_viewport_size({"width": 390, "height": 844})
    loading = held_back(page, "**/api/battles/*", lambda: page.goto(permalink))
    assert page.is_disabled("#run")  # loading: no turn 2 before turn 1 is shown
    loading.continue_()
    page.wait_for_selector(BOTH_READY, state="attached", timeout=60_000)
    assert page.is_disabled("#run")  # nor before it is watched
    assert page.is_visible("#vote")
    no_sideways_scroll(page, 390)
    audit(page, "an unvoted battle at 390 px")
    play_through(page)
    assert page.is_enabled("#run")

    # The battle page left behind: its key 1 no longer votes.
    page.evaluate("location.hash = '#/models'")
    page.wait_for_selector(".model-card")
    page.keyboard.press("1")

    # Leaving while a battle is being created: the URL stays where the user went, no turn is sent.
    page.evaluate("location.hash = '#/'")
    page.wait_for_selector("#run:enabled")
    page.fill("#instruction", "touch the blue cube")
    creating = held_back(page, "**/api/battles", lambda: page.click("#run"))
    page.evaluate("location.hash = '#/leaderboard'")
    creating.continue_()
    page.wait_for_timeout(2000)
    assert page.evaluate("location.hash") == "#/leaderboard"
    assert votes_sent(posts) == 0
    assert not any(path.endswith("/turns") for path in posts), posts
