/**
 * One battle on screen: its turns, both replays on one clock, the camera toggle, the vote (with
 * optional scores, a reason and keys 1–4) and the reveal.
 */
import { api, type Battle, type Choice, type Replay, type TurnOut } from "../api";
import { FREE_VIEW, ReplayView } from "../replay/scene";
import { Timeline } from "../replay/timeline";
import { isTyping, parseScore, revealLines, shortcutChoice } from "../reveal";
import { canVote, lastDone, turnActive } from "../battle-state";
import { el, errorText } from "../ui";
import type { IsCurrent } from "./battle";

const CHOICES: [Choice, string, string][] = [
  ["a", "A is better", "1"], ["b", "B is better", "2"], ["tie", "Tie", "3"], ["both_bad", "Both bad", "4"],
];
const CAMERAS: [string, string][] = [[FREE_VIEW, "Free view (drag to orbit)"], ["front", "Front camera"], ["wrist", "Wrist camera"]];
const SIDES = ["a", "b"] as const;

export interface StageEvents {
  status: (text: string, error?: boolean) => void;
  /** A turn's replays were played through for the first time. */
  watched: () => void;
  /** The vote was recorded: the battle as the API now has it. */
  voted: (battle: Battle) => void;
}

/**
 * The page owns the battle: it hands every newer copy to `update`, and `lock`s the stage while it
 * sends a turn. The stage only adds what happens here: which turns were watched, and the vote.
 */
export class BattleStage {
  /** Turns whose replays have played to the end at least once. */
  readonly watched = new Set<number>();
  private battle: Battle;
  private readonly replays = new Map<number, Promise<Replay[]>>();
  private current = 0;
  private request = 0; // the newest showTurn: older ones drop their replays when they resolve
  private timeline: Timeline | null = null;
  private frames: number[][][] = [];
  private drawn = -1;
  private frame = 0;
  private stopped = false;
  private votedHere = false;
  private voting = false;
  private locked = false;
  private readonly onKey = (event: KeyboardEvent) => this.shortcut(event);

  // The DOM it owns
  private readonly turnTitle = el("h2", { id: "turn-title" });
  private readonly turns = el("div", { id: "turns", role: "group", "aria-label": "Finished turns" });
  private readonly panes: HTMLDivElement;
  private readonly play = el("button", { id: "play", type: "button" }, "Play");
  private readonly seek = el("input", { id: "seek", type: "range", min: "0", max: "1000", value: "0", "aria-label": "Position in the replays" });
  private readonly speed = el("select", { id: "speed" });
  private readonly camera = el("select", { id: "camera" });
  private readonly voteBox = el("section", { id: "vote", "aria-labelledby": "vote-title" });
  private readonly voteHint = el("p", { id: "vote-hint", class: "hint" });
  private readonly scoreA = scoreInput("a");
  private readonly scoreB = scoreInput("b");
  private readonly reason = el("textarea", { id: "reason", maxlength: "280", rows: "2", placeholder: "e.g. A grasped the cube but dropped it" });
  private readonly reasonCount = el("span", { id: "reason-count", class: "hint" }, "0/280");
  private readonly buttons: HTMLButtonElement[];
  private readonly voteError = el("p", { id: "vote-error", class: "error", role: "alert" });
  private readonly reveal = el("section", { id: "reveal", "aria-live": "polite", "aria-label": "Reveal" });

  private constructor(
    battle: Battle,
    container: HTMLElement,
    private readonly canvases: HTMLCanvasElement[],
    private readonly views: ReplayView[],
    private readonly events: StageEvents,
  ) {
    this.battle = battle;
    this.panes = canvases[0].closest(".panes") as HTMLDivElement;
    this.buttons = CHOICES.map(([choice, label, key]) => {
      const button = el("button", { type: "button", "data-choice": choice, "aria-keyshortcuts": key, disabled: "" },
        label, " ", el("kbd", { "aria-hidden": "true" }, key));
      button.onclick = () => void this.vote(choice);
      return button;
    });
    container.append(this.turnTitle, this.turns, this.panes, this.controls(), this.votePanel(), this.reveal);
    views.forEach((v) => v.onCameraChange(() => this.draw()));
    document.addEventListener("keydown", this.onKey);
    this.startLoop();
  }

  /** Play/pause, the seek bar, speed and camera. */
  private controls(): HTMLDivElement {
    this.speed.replaceChildren(...["0.5", "1", "2", "4"].map((s) => el("option", { value: s }, `${s}×`)));
    this.speed.value = "1";
    const names = new Set(this.views[0].cameraNames());
    this.camera.replaceChildren(...CAMERAS.filter(([name]) => name === FREE_VIEW || names.has(name))
      .map(([name, label]) => el("option", { value: name }, label)));
    this.play.onclick = () => {
      if (!this.timeline) return;
      if (this.timeline.playing) this.timeline.pause();
      else this.timeline.play();
    };
    this.seek.oninput = () => {
      if (!this.timeline) return;
      this.timeline.seek((Number(this.seek.value) / 1000) * this.timeline.duration);
      this.draw();
    };
    this.speed.onchange = () => { if (this.timeline) this.timeline.speed = Number(this.speed.value); };
    this.camera.onchange = () => {
      try {
        this.views.forEach((v) => v.setCamera(this.camera.value));
        this.draw();
      } catch (error) {
        this.events.status(`The view could not change: ${errorText(error)}`, true);
      }
    };
    return el("div", { class: "controls" },
      this.play, this.seek,
      el("span", { class: "field inline" }, el("label", { for: "speed" }, "Speed"), this.speed),
      el("span", { class: "field inline" }, el("label", { for: "camera" }, "View"), this.camera));
  }

  /** The vote: optional scores and reason, the four buttons. */
  private votePanel(): HTMLElement {
    this.reason.oninput = () => { this.reasonCount.textContent = `${this.reason.value.length}/280`; };
    this.voteBox.append(
      el("h2", { id: "vote-title" }, "Your vote"),
      el("p", { class: "hint" }, "Which policy did better over the whole battle? Optionally rate how far each got "
        + "(0: nothing useful, 100: the task done) and say why. Keys 1–4 vote when you are not typing."),
      el("div", { class: "scores" },
        el("div", { class: "field" }, el("label", { for: "score-a" }, "A's progress, 0–100 (optional)"), this.scoreA),
        el("div", { class: "field" }, el("label", { for: "score-b" }, "B's progress, 0–100 (optional)"), this.scoreB),
        el("div", { class: "field grow" }, el("label", { for: "reason" }, "Why? (optional, up to 280 characters)"),
          this.reason, this.reasonCount)),
      el("div", { class: "votes", role: "group", "aria-label": "Vote" }, ...this.buttons),
      this.voteHint,
      this.voteError);
    return this.voteBox;
  }

  /** The render loop: advances the clock and draws, until disposed. */
  private startLoop(): void {
    let last = performance.now();
    const loop = (now: number) => {
      if (this.stopped) return;
      this.tick((now - last) / 1000);
      last = now;
      this.frame = requestAnimationFrame(loop);
    };
    this.frame = requestAnimationFrame(loop);
  }

  get battleId(): string {
    return this.battle.battle_id;
  }

  /** Build the panes and both replays' scenes; null if the user left meanwhile. */
  static async create(battle: Battle, container: HTMLElement, isCurrent: IsCurrent, events: StageEvents): Promise<BattleStage | null> {
    const panes = el("div", { class: "panes" });
    const canvases = SIDES.map((side) => {
      const canvas = el("canvas", { class: "replay", "data-side": side, role: "img", "aria-label": `Replay of model ${side.toUpperCase()}` });
      panes.append(el("figure", { class: "pane" }, el("figcaption", { class: "side-label" }, `Model ${side.toUpperCase()}`), canvas));
      return canvas;
    });
    container.replaceChildren(panes); // sized before the renderers start
    const made = await Promise.allSettled(canvases.map((c) => ReplayView.create(c, battle.scene_id)));
    const views = made.flatMap((m) => (m.status === "fulfilled" ? [m.value] : []));
    const failed = made.find((m): m is PromiseRejectedResult => m.status === "rejected");
    if (failed || !isCurrent()) { // free what was made: nothing else will
      views.forEach((v) => v.dispose());
      if (failed && isCurrent()) events.status(`The replay could not be built: ${errorText(failed.reason)}`, true);
      return null;
    }
    return new BattleStage(battle, container, canvases, views, events);
  }

  dispose(): void {
    if (this.stopped) return;
    this.stopped = true;
    cancelAnimationFrame(this.frame);
    document.removeEventListener("keydown", this.onKey);
    this.views.forEach((v) => v.dispose());
  }

  /** While locked (the page is sending a turn) neither the vote nor the turn tabs respond. */
  lock(locked: boolean): void {
    if (locked === this.locked) return;
    this.locked = locked;
    this.update(this.battle);
  }

  /** The battle as the API now has it: the turn list, the vote panel, the reveal. */
  update(battle: Battle, votedHere = false): void {
    this.battle = battle;
    this.votedHere ||= votedHere;
    const busy = this.locked || turnActive(battle);
    const done = battle.turns.filter((t) => t.status === "done" || t.status === "failed");
    this.turns.replaceChildren(...done.map((turn) => {
      const ok = turn.status === "done";
      const button = el("button", {
        type: "button", class: "turn", "data-turn": String(turn.number), "aria-pressed": String(turn.number === this.current),
      }, `Turn ${turn.number}: ${turn.instruction}${ok ? "" : " (failed)"}`);
      button.disabled = !ok || busy;
      button.onclick = () => void this.showTurn(turn.number);
      return button;
    }));
    this.turns.hidden = done.length < 2;
    this.syncVote();
    this.showReveal();
  }

  /** Replay one finished turn (its replays are fetched once). */
  async showTurn(number: number): Promise<void> {
    const turn = this.battle.turns.find((t) => t.number === number);
    if (!turn || turn.status !== "done" || this.stopped) return;
    const request = ++this.request;
    this.events.status(`Loading turn ${number}'s replays…`);
    let replays = this.replays.get(number);
    if (!replays) {
      const episodes = SIDES.map((side) => turn.episodes.find((e) => e.side === side));
      replays = Promise.all(episodes.map((e) => {
        if (!e) throw new Error(`turn ${number} has no episode for both sides`);
        return api.replay(e.replay_url);
      }));
      this.replays.set(number, replays);
      replays.catch(() => this.replays.delete(number));
    }
    let loaded: Replay[];
    try {
      loaded = await replays;
    } catch (error) {
      if (request === this.request) this.events.status(`Turn ${number}'s replays could not be loaded: ${errorText(error)}`, true);
      return;
    }
    if (this.stopped || request !== this.request) return; // the user picked another turn meanwhile
    this.current = number;
    // Both episodes share one clock; the shorter one holds its last frame.
    const longest = loaded.reduce((a, b) => (a.time.length >= b.time.length ? a : b));
    this.timeline = new Timeline([0, ...longest.time.map((t) => t + 1e-6)]);
    this.timeline.speed = Number(this.speed.value);
    this.frames = loaded.map((r) => [r.initial_qpos, ...r.qpos]);
    this.drawn = -1;
    this.draw();
    this.seek.value = "0";
    this.canvases.forEach((c) => c.setAttribute("data-ready", "")); // the first frame is on screen
    this.panes.dataset.turn = String(number);
    for (const b of this.turns.querySelectorAll<HTMLButtonElement>("button.turn")) {
      b.setAttribute("aria-pressed", String(b.dataset.turn === String(number)));
    }
    this.turnTitle.textContent = `Turn ${number} of up to ${this.battle.max_turns}: “${turn.instruction}”`;
    this.events.status(this.statusFor(turn));
    this.timeline.play();
  }

  private statusFor(turn: TurnOut): string {
    const task = turn.task ? ` Task: ${turn.task.replace("_", " ")}.` : "";
    if (this.battle.vote !== null) return `Showing turn ${turn.number} (seed ${turn.seed}).${task}`;
    return `Showing turn ${turn.number} (seed ${turn.seed}).${task} Watch both to the end, then vote or give another instruction.`;
  }

  private draw(): void {
    if (!this.timeline || this.stopped) return;
    this.drawn = this.timeline.frame;
    this.views.forEach((v, k) => v.setQpos(this.frames[k][Math.min(this.drawn, this.frames[k].length - 1)]));
  }

  private tick(seconds: number): void {
    const t = this.timeline;
    if (!t) return;
    t.tick(seconds);
    if (t.frame !== this.drawn) { // also the last frame, reached as playback stops
      this.seek.value = String(Math.round((t.time / Math.max(t.duration, 1e-9)) * 1000));
      this.draw();
    }
    const label = t.playing ? "Pause" : "Play";
    if (this.play.textContent !== label) this.play.textContent = label;
    if (t.finished && !this.watched.has(this.current)) { // both replays have played through
      this.watched.add(this.current);
      this.syncVote();
      this.events.watched();
    }
  }

  /** Whether a vote can be cast now (see `canVote`), and none is being sent or locked out. */
  private canVote(): boolean {
    return !this.voting && !this.locked && canVote(this.battle, this.watched);
  }

  private syncVote(): void {
    const open = this.canVote();
    this.buttons.forEach((b) => { b.disabled = !open; });
    const voted = this.battle.vote !== null;
    this.voteBox.hidden = voted;
    this.voteHint.textContent = voted || open ? ""
      : this.voting ? "Sending your vote…"
      : this.locked || turnActive(this.battle) ? "Voting reopens once the next turn has finished and played to the end."
      : `Voting opens once turn ${lastDone(this.battle)?.number ?? ""}'s replays have played to the end (seeking there does not count).`;
  }

  private shortcut(event: KeyboardEvent): void {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    if (isTyping(event.target as HTMLElement | null)) return;
    const choice = shortcutChoice(event.key);
    if (!choice || !this.canVote()) return;
    event.preventDefault();
    void this.vote(choice);
  }

  private async vote(choice: Choice): Promise<void> {
    if (!this.canVote()) return;
    const scoreA = parseScore(this.scoreA.value), scoreB = parseScore(this.scoreB.value);
    if (scoreA === undefined || scoreB === undefined) {
      this.voteError.textContent = "A progress score is a whole number from 0 to 100, or left empty.";
      (scoreA === undefined ? this.scoreA : this.scoreB).focus();
      return;
    }
    this.voteError.textContent = "";
    this.voting = true;
    this.syncVote();
    try {
      const battle = await api.vote(this.battle.battle_id, {
        choice, score_a: scoreA, score_b: scoreB, reason: this.reason.value.trim() || null,
      });
      if (this.stopped) return;
      this.voting = false;
      this.update(battle, true);
      this.events.voted(battle);
      const turn = battle.turns.find((t) => t.number === this.current);
      if (turn) this.events.status(this.statusFor(turn));
      this.reveal.focus();
    } catch (error) {
      this.voting = false;
      this.syncVote();
      this.voteError.textContent = `Your vote was not recorded: ${errorText(error)}`;
    }
  }

  private showReveal(): void {
    const lines = revealLines(this.battle, this.votedHere);
    if (lines.length === 0) {
      this.reveal.replaceChildren();
      return;
    }
    this.reveal.setAttribute("tabindex", "-1");
    this.reveal.replaceChildren(el("h2", {}, "The reveal"), ...lines.map((line, k) => el("p", { class: k === 0 ? "lead" : "" },
      ...line.map((part) => (typeof part === "string" ? part
        : el("span", { class: `badge ${part.success === true ? "ok" : part.success === false ? "fail" : "unknown"}` }, part.text))))));
  }
}

function scoreInput(side: "a" | "b"): HTMLInputElement {
  return el("input", {
    id: `score-${side}`, type: "number", min: "0", max: "100", step: "1", inputmode: "numeric", placeholder: "unset",
  });
}
