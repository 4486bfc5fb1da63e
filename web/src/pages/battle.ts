/** The battle page: instruction → both episodes → side-by-side replay → vote → reveal. */
import { api, ApiError, ensureSession, type Battle, type Choice, type Replay, type TurnOut } from "../api";
import { ReplayView } from "../replay/scene";
import { Timeline } from "../replay/timeline";

const CHOICES: [Choice, string][] = [["a", "A is better"], ["b", "B is better"], ["tie", "Tie"], ["both_bad", "Both bad"]];

/** What the page holds while it shows a battle; released when the page changes. */
interface Showing { views: ReplayView[]; frame: number; stopped: boolean }
let showing: Showing | null = null;

export function leaveBattle(): void {
  if (!showing) return;
  showing.stopped = true;
  cancelAnimationFrame(showing.frame);
  showing.views.forEach((v) => v.dispose());
  showing = null;
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, text = ""): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  node.textContent = text;
  return node;
}

/** False once the user has navigated elsewhere: async work then stops and frees what it made. */
export type IsCurrent = () => boolean;

export async function battlePage(root: HTMLElement, isCurrent: IsCurrent, battleId?: string): Promise<void> {
  leaveBattle();
  root.replaceChildren();
  const status = el("p", { id: "status", role: "status" });
  const stage = el("section", { id: "stage" });
  if (battleId) {
    root.append(status, stage);
    const battle = await waitForTurn(battleId, status, isCurrent);
    if (battle) await showBattle(battle, stage, status, isCurrent);
    return;
  }
  const form = el("form", { id: "run-form" });
  const scene = el("select", { id: "scene" });
  const instruction = el("input", { id: "instruction", placeholder: "e.g. pick up the red cube", maxlength: "200", required: "" });
  const examples = el("div", { id: "examples" });
  const run = el("button", { id: "run", type: "submit" }, "Run");
  form.append(el("label", {}, "Scene "), scene, instruction, run, examples);
  root.append(form, status, stage);
  const scenes = await api.scenes();
  if (!isCurrent()) return;
  const showExamples = () => {
    examples.replaceChildren(...(scenes.find((s) => s.scene_id === scene.value)?.examples ?? []).map((text) => {
      const chip = el("button", { type: "button", class: "example" }, text);
      chip.onclick = () => { instruction.value = text; };
      return chip;
    }));
  };
  scene.replaceChildren(...scenes.map((s) => el("option", { value: s.scene_id }, s.scene_id)));
  scene.onchange = showExamples;
  showExamples();
  form.onsubmit = async (event) => {
    event.preventDefault();
    run.disabled = true;
    try {
      await ensureSession();
      const battle = await api.newBattle(scene.value);
      history.replaceState(null, "", `#/battles/${battle.battle_id}`);
      await api.newTurn(battle.battle_id, instruction.value, crypto.randomUUID());
      const done = await waitForTurn(battle.battle_id, status, isCurrent);
      if (done) await showBattle(done, stage, status, isCurrent);
    } catch (error) {
      status.textContent = error instanceof ApiError ? error.body.detail : String(error);
    } finally {
      run.disabled = false;
    }
  };
}

/** Poll until the battle's last turn has ended (null if the user navigated away). */
async function waitForTurn(battleId: string, status: HTMLElement, isCurrent: IsCurrent): Promise<Battle | null> {
  for (;;) {
    const battle = await api.battle(battleId);
    if (!isCurrent()) return null;
    const turn = battle.turns[battle.turns.length - 1];
    if (!turn || turn.status === "done" || turn.status === "failed") return battle;
    const steps = (side: "a" | "b") => `${turn.progress?.[side] ?? 0}/${turn.max_steps}`;
    status.textContent = turn.status === "queued"
      ? `Queued: position ${turn.queue_position ?? "?"}`
      : `Running both policies in simulation: A ${steps("a")} steps, B ${steps("b")} steps`;
    await new Promise((r) => setTimeout(r, 400));
  }
}

async function showBattle(battle: Battle, stage: HTMLElement, status: HTMLElement, isCurrent: IsCurrent): Promise<void> {
  leaveBattle();
  stage.replaceChildren();
  const turn: TurnOut | undefined = [...battle.turns].reverse().find((t) => t.status === "done");
  if (!turn) {
    const last = battle.turns[battle.turns.length - 1];
    status.textContent = last?.error ? `The turn failed: ${last.error.detail}` : "No finished turn yet.";
    return;
  }
  status.textContent = `“${turn.instruction}” (seed ${turn.seed})`;
  const replays: Replay[] = await Promise.all(turn.episodes.map((e) => api.replay(e.replay_url)));
  if (!isCurrent()) return;
  const panes = el("div", { class: "panes" });
  const canvases = replays.map((_, k) => {
    const pane = el("figure", { class: "pane" });
    const canvas = el("canvas", { class: "replay", "data-side": k === 0 ? "a" : "b" });
    pane.append(el("figcaption", { class: "side-label" }, `Model ${k === 0 ? "A" : "B"}`), canvas);
    panes.append(pane);
    return canvas;
  });
  const controls = el("div", { class: "controls" });
  const play = el("button", { id: "play", type: "button" }, "Play");
  const seek = el("input", { id: "seek", type: "range", min: "0", max: "1000", value: "0" });
  const speed = el("select", { id: "speed" });
  speed.replaceChildren(...["0.5", "1", "2", "4"].map((s) => el("option", { value: s }, `${s}x`)));
  speed.value = "1";
  controls.append(play, seek, speed);
  const votes = el("div", { class: "votes" });
  const buttons = CHOICES.map(([choice, label]) => {
    const button = el("button", { type: "button", "data-choice": choice, disabled: "" }, label);
    votes.append(button);
    return button;
  });
  const reveal = el("p", { id: "reveal" });
  stage.append(panes, controls, votes, reveal);

  const made = await Promise.allSettled(canvases.map((c) => ReplayView.create(c, battle.scene_id)));
  const views = made.flatMap((m) => (m.status === "fulfilled" ? [m.value] : []));
  const failed = made.find((m) => m.status === "rejected");
  if (failed || !isCurrent()) { // free what was made: nothing else will
    views.forEach((v) => v.dispose());
    if (failed) status.textContent = `The replay could not be built: ${String((failed as PromiseRejectedResult).reason)}`;
    return;
  }
  leaveBattle();
  const state: Showing = { views, frame: 0, stopped: false };
  showing = state;
  // Both episodes share one clock; the shorter one holds its last frame.
  const longest = replays.reduce((a, b) => (a.time.length >= b.time.length ? a : b));
  const timeline = new Timeline([0, ...longest.time.map((t) => t + 1e-6)]);
  const frames = replays.map((r) => [r.initial_qpos, ...r.qpos]);
  let drawn = -1;
  const draw = () => {
    drawn = timeline.frame;
    views.forEach((v, k) => v.setQpos(frames[k][Math.min(drawn, frames[k].length - 1)]));
  };
  views.forEach((v) => v.onCameraChange(draw));
  draw();
  canvases.forEach((c) => c.setAttribute("data-ready", "")); // the first frame is on screen

  const canVote = battle.vote === null && battle.turns.length > 0;
  const showReveal = (b: Battle) => {
    const byModel = new Map(b.turns.flatMap((t) => t.episodes).map((e) => [e.side, e]));
    reveal.textContent = `Vote: ${b.vote}. Model A was ${b.model_a} (sim success: ${byModel.get("a")?.success}); `
      + `Model B was ${b.model_b} (sim success: ${byModel.get("b")?.success}).`;
    buttons.forEach((button) => { button.disabled = true; });
  };
  if (battle.vote !== null) showReveal(battle);
  buttons.forEach((button, k) => {
    button.onclick = async () => {
      try {
        showReveal(await api.vote(battle.battle_id, CHOICES[k][0]));
      } catch (error) {
        reveal.textContent = error instanceof ApiError ? error.body.detail : String(error);
      }
    };
  });

  let last = performance.now();
  const loop = (now: number) => {
    if (state.stopped) return;
    timeline.tick((now - last) / 1000);
    last = now;
    if (timeline.frame !== drawn) { // also the last frame, reached as playback stops
      seek.value = String(Math.round((timeline.time / Math.max(timeline.duration, 1e-9)) * 1000));
      draw();
    }
    play.textContent = timeline.playing ? "Pause" : "Play";
    if (timeline.finished && canVote && buttons[0].disabled && reveal.textContent === "") {
      buttons.forEach((b) => { b.disabled = false; }); // both replays have played through
    }
    state.frame = requestAnimationFrame(loop);
  };
  state.frame = requestAnimationFrame(loop);
  play.onclick = () => (timeline.playing ? timeline.pause() : timeline.play());
  seek.oninput = () => { timeline.seek((Number(seek.value) / 1000) * timeline.duration); draw(); };
  speed.onchange = () => { timeline.speed = Number(speed.value); };
  timeline.play();
}
