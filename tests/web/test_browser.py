"""The whole stack in a real browser: Debian's chromium, headless, driven by Playwright."""

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

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
        if message.type == "error" and not message.location["url"].endswith("/favicon.ico"):
            errors.append(f"{message.text} ({message.location['url']})")

    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", console)
    yield page
    page.close()
    assert errors == [], errors  # CSP violations included


def test_a_battle_in_the_browser(page: Page, arena_url: str) -> None:
    votes_before = httpx.get(f"{arena_url}api/leaderboard", timeout=60).json()["votes"]
    response = page.goto(arena_url)
    assert response is not None
    assert "wasm-unsafe-eval" in response.headers["content-security-policy"]  # and it loads
    page.click("button.example >> text=pick up the red cube")
    assert page.input_value("#instruction") == "pick up the red cube"
    page.click("#run")
    canvases = page.locator("canvas.replay[data-ready]")  # the first frame is drawn
    page.wait_for_selector(BOTH_READY, state="attached", timeout=120_000)
    assert page.locator(".side-label").all_text_contents() == ["Model A", "Model B"]
    vote = page.locator("button[data-choice=a]")

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
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "battle.png"))

    # Play from the start at 4x: the picture moves while it plays, then the vote opens.
    page.fill("#seek", "0")
    page.select_option("#speed", "4")
    page.click("#play")
    first = canvases.first.screenshot()
    page.wait_for_timeout(700)
    assert canvases.first.screenshot() != first
    page.wait_for_selector("button[data-choice=a]:enabled", timeout=60_000)
    vote.click()
    page.wait_for_selector(REVEALED)
    reveal = page.text_content("#reveal") or ""
    assert "Model A was" in reveal
    assert "sim success" in reveal
    permalink = page.url
    assert "#/battles/" in permalink

    page.goto(f"{arena_url}#/leaderboard")
    page.wait_for_selector("#leaderboard tbody tr")
    assert (page.text_content("#votes") or "").startswith(f"{votes_before + 1} vote")
    assert page.locator("#rating-chart circle").count() == 2
    page.screenshot(path=str(ARTIFACTS / "leaderboard.png"))

    page.goto(permalink)  # a past battle replays from its URL, revealed
    page.wait_for_selector(REVEALED)
    assert page.locator("canvas.replay").count() == 2


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
