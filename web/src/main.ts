import "./style.css";
import { battlePage, leaveBattle } from "./pages/battle";
import { leaderboardPage } from "./pages/leaderboard";

const root = document.getElementById("app") as HTMLElement;
let navigation = 0; // bumped on every route: older pages' async work sees it and stops

async function route(): Promise<void> {
  const mine = ++navigation;
  const isCurrent = () => mine === navigation;
  const hash = location.hash.replace(/^#/, "") || "/";
  const permalink = hash.match(/^\/battles\/([0-9a-f]{1,32})$/);
  try {
    if (hash === "/leaderboard") {
      leaveBattle();
      await leaderboardPage(root, isCurrent);
    } else {
      await battlePage(root, isCurrent, permalink?.[1]);
    }
  } catch (error) {
    if (isCurrent()) root.textContent = `Something went wrong: ${String(error)}`;
  }
}

window.addEventListener("hashchange", () => void route()); // replaceState (a new permalink) fires none
void route();
