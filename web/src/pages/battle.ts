/**
 * The battle page: instruction → both episodes → side-by-side replay → another instruction to the
 * same pair, or a vote on the whole battle → reveal.
 */
import { api, ensureSession, retryDelay, type Battle, type Scene, type TurnOut } from "../api";
import { lastDone, latestWatched, turnActive } from "../battle-state";
import { colourVariants } from "../examples";
import { BattleStage } from "./stage";
import { el, errorText } from "../ui";

/** False once the user has navigated elsewhere: async work then stops and frees what it made. */
export type IsCurrent = () => boolean;

/** The stage on screen (replays, clock, key handler); released when the page changes. */
let showing: BattleStage | null = null;

export function leaveBattle(): void {
  showing?.dispose();
  showing = null;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function battlePage(root: HTMLElement, isCurrent: IsCurrent, battleId?: string): Promise<void> {
  leaveBattle();
  root.replaceChildren(); // synchronously: the old page's canvases go at once
  await new BattlePage(root, isCurrent).start(battleId);
}

class BattlePage {
  /** Announced (a live region): only changes of state, never the step count. */
  private readonly status = el("p", { id: "status", role: "status", "aria-live": "polite" });
  /** The running turn's queue position or steps: not live, so polls are not read out. */
  private readonly detail = el("p", { id: "turn-detail", class: "hint", hidden: "" });
  private readonly steps = el("progress", { id: "steps", "aria-label": "Simulation steps done" });
  private readonly stageEl = el("section", { id: "stage", "aria-label": "Replays and vote" });
  private readonly scene = el("select", { id: "scene" });
  private readonly instruction = el("input", {
    id: "instruction", type: "text", placeholder: "e.g. pick up the red cube", maxlength: "200", required: "",
    autocomplete: "off",
  });
  private readonly run = el("button", { id: "run", type: "submit" }, "Run");
  private readonly newBattle = el("button", { id: "new-battle", type: "button", hidden: "" }, "New battle");
  private readonly hint = el("p", { id: "form-hint", class: "hint" });
  private readonly examples = el("div", { id: "examples" });
  private scenes: Scene[] = [];
  private battle: Battle | null = null;
  private stage: BattleStage | null = null;
  /** Loading the battle or sending a turn: the form waits. */
  private busy = false;
  private builds = 0; // bumped per stage build: a superseded build frees what it made

  constructor(root: HTMLElement, private readonly isCurrent: IsCurrent) {
    const intro = el("section", { class: "intro", "aria-labelledby": "intro-title" },
      el("h1", { id: "intro-title" }, "Which robot policy did it better?"),
      el("p", {}, "Two anonymous robot policies get the same instruction and the same start state in a MuJoCo "
        + "simulation of a Franka arm. Watch both replays to the end, then vote for the one that carried out "
        + "the instruction better: what it achieved counts, not how elegant it looked. If neither did, say so."),
      el("p", {}, "You can give the same pair more instructions before voting; your vote covers every turn. "
        + "The models' names, and whether the simulator judged each one a success, are revealed after you vote."));
    const form = el("form", { id: "run-form", "aria-label": "Give both robots an instruction" },
      el("div", { class: "field" }, el("label", { for: "scene" }, "Scene"), this.scene),
      el("div", { class: "field grow" }, el("label", { for: "instruction" }, "Instruction"), this.instruction),
      el("div", { class: "buttons" }, this.run, this.newBattle),
      this.hint,
      this.examplesBox());
    form.onsubmit = (event) => { event.preventDefault(); void this.submit(); };
    this.newBattle.onclick = () => { location.hash = "#/"; };
    this.scene.onchange = () => this.showExamples();
    root.append(intro, form, this.status, this.detail, this.stageEl);
  }

  /** The example chips, folded away on narrow screens where they would fill the page. */
  private examplesBox(): HTMLDetailsElement {
    const box = el("details", { id: "examples-box" }, el("summary", {}, "Example instructions"), this.examples);
    box.open = !window.matchMedia("(max-width: 700px)").matches;
    return box;
  }

  async start(battleId?: string): Promise<void> {
    this.busy = true;
    this.setStatus("Loading scenes…");
    this.syncForm();
    let failure = "The scenes could not be loaded";
    try {
      this.scenes = await api.scenes();
      if (!this.isCurrent()) return;
      this.scene.replaceChildren(...this.scenes.map((s) => el("option", { value: s.scene_id }, s.scene_id)));
      this.showExamples();
      this.setStatus("");
      if (!battleId) return;
      failure = "The battle could not be shown";
      this.setStatus("Loading the battle…");
      const battle = await this.waitForTurn(battleId);
      if (battle) await this.show(battle, false);
    } catch (error) {
      if (this.isCurrent()) this.setStatus(`${failure}: ${errorText(error)}`, true);
    } finally {
      this.finish();
    }
  }

  /** The page's work ends: the form follows the battle again. */
  private finish(): void {
    this.busy = false;
    if (!this.isCurrent()) return;
    this.showDetail(null);
    this.syncForm();
  }

  private setStatus(text: string, error = false): void {
    if (this.status.textContent !== text) this.status.textContent = text; // the same words are not read again
    this.status.classList.toggle("error", error);
  }

  /** Where the running turn is: its place in the queue or its steps (null: hidden). */
  private showDetail(turn: TurnOut | null): void {
    this.detail.hidden = turn === null;
    if (turn === null) return;
    if (turn.status === "queued") {
      this.detail.textContent = `Position ${turn.queue_position ?? "?"} in line.`;
      return;
    }
    const text = `${turn.steps_done ?? 0} of ${turn.max_steps} steps`;
    this.steps.max = turn.max_steps;
    this.steps.value = turn.steps_done ?? 0;
    this.steps.setAttribute("aria-valuetext", text);
    this.detail.replaceChildren(this.steps, ` ${text}`);
  }

  private showExamples(): void {
    const examples = colourVariants(this.scenes.find((s) => s.scene_id === this.scene.value)?.examples ?? []);
    this.examples.replaceChildren(...examples.map((text) => {
      const chip = el("button", { type: "button", class: "example" }, text);
      chip.onclick = () => { this.instruction.value = text; this.instruction.focus(); };
      return chip;
    }));
  }

  /** Whether the next instruction goes to the open battle (same pair) rather than a new one. */
  private mode(): "new" | "turn" | "wait" | "limit" {
    const b = this.battle;
    if (!b || b.vote !== null) return "new";
    if (turnActive(b)) return "wait";
    if (b.turns.length >= b.max_turns) return "limit";
    return latestWatched(b, this.stage?.watched ?? new Set()) ? "turn" : "wait";
  }

  /** The form's label, hint and enabled state follow the battle; the stage is locked while busy. */
  private syncForm(): void {
    const mode = this.mode();
    const b = this.battle;
    const next = nextTurn(b);
    this.scene.disabled = this.busy || mode !== "new";
    if (b && mode !== "new" && this.scenes.some((s) => s.scene_id === b.scene_id)) this.scene.value = b.scene_id;
    this.newBattle.hidden = mode === "new"; // an open battle can be left for a new one
    this.run.textContent = mode !== "new" ? `Run turn ${Math.min(next, b?.max_turns ?? next)} of ${b?.max_turns ?? "?"}`
      : b ? "Start a new battle" : "Run";
    this.run.disabled = this.busy || this.scenes.length === 0 || mode === "wait" || mode === "limit";
    this.instruction.disabled = this.busy || mode === "limit";
    this.hint.textContent = this.busy ? "" : this.hintFor(mode, next);
    this.stage?.lock(this.busy);
  }

  private hintFor(mode: ReturnType<BattlePage["mode"]>, next: number): string {
    const b = this.battle;
    switch (mode) {
      case "wait":
        return "Watch both replays to the end; then vote, or give the same pair another instruction.";
      case "limit":
        return `This battle has reached its ${b?.max_turns} turns: vote to see which models they were.`;
      case "turn":
        return `Another instruction goes to the same two models (turn ${next} of ${b?.max_turns}); or vote below.`;
      case "new":
        return b ? "This battle is voted. A new instruction starts a new battle with two newly drawn models."
          : "Type an instruction or pick an example; both policies run it from the same start.";
    }
  }

  /** The page owns the battle: every newer copy goes to the stage too. */
  private setBattle(battle: Battle): void {
    this.battle = battle;
    this.stage?.update(battle);
  }

  /** Swap the stage on screen, freeing the old one (only while this page is current). */
  private replaceStage(stage: BattleStage | null): void {
    this.stage?.dispose();
    this.stage = stage;
    showing = stage;
  }

  private async submit(): Promise<void> {
    const text = this.instruction.value.trim();
    const mode = this.mode();
    if (!text || this.busy || (mode !== "new" && mode !== "turn")) return;
    this.busy = true;
    this.syncForm();
    try {
      await ensureSession();
      if (!this.isCurrent()) return;
      if (mode === "new") {
        this.replaceStage(null);
        this.battle = null;
        this.stageEl.replaceChildren();
        this.setStatus("Starting a battle: drawing two anonymous models…");
        const battle = await api.newBattle(this.scene.value);
        if (!this.isCurrent()) return; // left meanwhile: no permalink, no turn
        this.battle = battle;
        history.replaceState(null, "", `#/battles/${battle.battle_id}`);
      }
      const id = (this.battle as Battle).battle_id;
      this.setStatus(`Sending turn ${nextTurn(this.battle)}…`);
      const sent = await api.newTurn(id, text, crypto.randomUUID());
      if (!this.isCurrent()) return;
      this.setBattle(sent);
      const battle = await this.waitForTurn(id);
      if (battle) await this.show(battle, true);
    } catch (error) {
      if (this.isCurrent()) this.setStatus(`Something went wrong: ${errorText(error)}`, true);
    } finally {
      this.finish();
    }
  }

  /** Poll until the battle's last turn has ended, saying what happens (null if the user left).
   * Transient failures (network, 429, 502–504) are retried with backoff. */
  private async waitForTurn(battleId: string): Promise<Battle | null> {
    for (let failures = 0; ;) {
      let battle: Battle;
      try {
        battle = await api.battle(battleId);
        failures = 0;
      } catch (error) {
        const wait = retryDelay(error, failures++);
        if (wait === null || !this.isCurrent()) throw error;
        this.setStatus(`The arena did not answer (${errorText(error)}): trying again in ${Math.ceil(wait / 1000)} s…`);
        await sleep(wait);
        if (!this.isCurrent()) return null;
        continue;
      }
      if (!this.isCurrent()) return null;
      this.setBattle(battle);
      const turn = battle.turns[battle.turns.length - 1];
      if (!turn || !turnActive(battle)) return battle;
      this.setStatus(turn.status === "queued" ? `Turn ${turn.number} is queued.`
        : `Turn ${turn.number} is running both policies in simulation.`);
      this.showDetail(turn);
      this.syncForm();
      await sleep(400);
    }
  }

  /** Show the battle: build the stage once, then its newest finished turn. */
  private async show(battle: Battle, fresh: boolean): Promise<void> {
    this.setBattle(battle);
    this.showDetail(null);
    const last = battle.turns[battle.turns.length - 1];
    const done = lastDone(battle);
    if (!done) {
      this.setStatus(last?.error ? `Turn ${last.number} failed: ${last.error.detail}` : "No turn of this battle has finished yet.",
        Boolean(last?.error));
      return;
    }
    if (this.stage?.battleId !== battle.battle_id) {
      const build = ++this.builds;
      this.replaceStage(null);
      this.stageEl.replaceChildren();
      this.setStatus("Building the replay: loading MuJoCo and the scene in your browser…");
      const stage = await BattleStage.create(battle, this.stageEl, () => this.isCurrent() && build === this.builds, {
        status: (text, error) => this.setStatus(text, error),
        watched: () => this.syncForm(),
        voted: (b) => { this.battle = b; this.syncForm(); },
      });
      if (!stage) return; // failed, left, or superseded by a newer build: it freed itself
      this.replaceStage(stage);
      stage.lock(this.busy);
    }
    const stage = this.stage as BattleStage;
    stage.update(battle);
    await stage.showTurn(done.number);
    if (!this.isCurrent()) return;
    if (last && last.status === "failed" && last.number > done.number) {
      this.setStatus(`Turn ${last.number} failed: ${last.error?.detail ?? "unknown error"}. Showing turn ${done.number}.`, true);
    }
    if (fresh) this.instruction.value = "";
    this.syncForm();
  }
}

/** The number of a battle's next turn. */
const nextTurn = (battle: Battle | null) => (battle?.turns.length ?? 0) + 1;
