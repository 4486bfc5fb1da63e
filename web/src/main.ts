import "./style.css";
import { battlePage, leaveBattle } from "./pages/battle";
import { leaderboardPage } from "./pages/leaderboard";
import { modelsPage } from "./pages/models";

const root = document.getElementById("app") as HTMLElement;
let navigation = 0; // bumped on every route: older pages' async work sees it and stops

/** The nav link for the page on screen says so (aria-current). */
function markNav(path: string): void {
  for (const link of document.querySelectorAll<HTMLAnchorElement>("header nav a")) {
    const target = link.getAttribute("href")?.replace(/^#/, "") ?? "";
    const here = target === "/" ? path === "/" || path.startsWith("/battles/") : path === target;
    if (here) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

/** After an in-app navigation, focus goes to the new page's heading (unless the page placed it). */
function focusPage(): void {
  if (root.contains(document.activeElement)) return;
  const target = root.querySelector<HTMLElement>("h1") ?? root;
  target.setAttribute("tabindex", "-1");
  target.focus({ preventScroll: true });
}

async function route(): Promise<void> {
  const mine = ++navigation;
  const isCurrent = () => mine === navigation;
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = hash.split("?", 2);
  const params = new URLSearchParams(query);
  const permalink = path.match(/^\/battles\/([0-9a-f]{1,32})$/);
  markNav(path);
  try {
    if (path === "/leaderboard") {
      leaveBattle();
      document.title = "Leaderboard · VLArena";
      await leaderboardPage(root, isCurrent, { task: params.get("task") || undefined, scene: params.get("scene") || undefined });
    } else if (path === "/models") {
      leaveBattle();
      document.title = "Models · VLArena";
      await modelsPage(root, isCurrent);
    } else {
      document.title = "Battle · VLArena";
      await battlePage(root, isCurrent, permalink?.[1]);
    }
    if (isCurrent() && mine > 1) focusPage(); // not on the first load: the reader starts at the top
  } catch (error) {
    if (isCurrent()) root.textContent = `Something went wrong: ${String(error)}`;
  }
}

window.addEventListener("hashchange", () => void route()); // replaceState (a new permalink) fires none
void route();
