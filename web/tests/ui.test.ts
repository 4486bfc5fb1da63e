import { describe, expect, it } from "vitest";
import { ApiError, boardQuery, retryDelay, type Battle } from "../src/api";
import { canVote, lastDone, latestWatched, turnActive } from "../src/battle-state";
import { colourVariants } from "../src/examples";
import { countColour, winRateColour } from "../src/heatmap";
import { boardHash } from "../src/pages/leaderboard";
import { cameraPose } from "../src/replay/geometry";
import { isTyping, lineText, parseScore, revealLines, shortcutChoice } from "../src/reveal";
import { humanCount, interval, pct } from "../src/ui";

describe("colourVariants", () => {
  it("gives every template once per colour, second colours always another cube", () => {
    const out = colourVariants(["touch the red cube", "put the red cube on the blue cube", "wave"]);
    expect(out).toEqual([
      "touch the red cube", "touch the green cube", "touch the blue cube",
      "put the red cube on the green cube", "put the green cube on the blue cube", "put the blue cube on the red cube",
      "wave",
    ]);
  });
});

const battle = (over: Partial<Battle>): Battle => ({
  battle_id: "b1", url: "/x", scene_id: "table", status: "voted", created_at: "", max_turns: 5,
  model_a: "vla-flow-small", model_b: "vla-ar-small", vote: "a", score_a: null, score_b: null, reason: null,
  turns: [{
    number: 1, instruction: "touch the red cube", seed: 3, max_steps: 60, status: "done", task: "touch",
    queue_position: null, steps_done: null, error: null, created_at: "", finished_at: "",
    episodes: [
      { side: "a", num_steps: 10, replay_url: "", model_id: "vla-flow-small", success: true },
      { side: "b", num_steps: 10, replay_url: "", model_id: "vla-ar-small", success: false },
    ],
  }],
  ...over,
});

describe("revealLines", () => {
  it("reads as sentences with badges", () => {
    const lines = revealLines(battle({}), true).map(lineText);
    expect(lines).toEqual(["You voted for A. A was vla-flow-small ✓ succeeded in simulation; B was vla-ar-small ✗ failed."]);
    expect(revealLines(battle({ vote: null }), true)).toEqual([]);
  });

  it("gives each turn's outcome, the scores and the reason", () => {
    const one = battle({}).turns[0];
    const two = { ...one, number: 2, instruction: "pick up the blue cube",
      episodes: one.episodes.map((e) => ({ ...e, success: e.side === "b" })) };
    const lines = revealLines(battle({ vote: "tie", turns: [one, two], score_a: 70, reason: "close" }), false).map(lineText);
    expect(lines).toEqual([
      "This battle was voted a tie. A was vla-flow-small; B was vla-ar-small.",
      "Turn 1 (“touch the red cube”): A ✓ succeeded, B ✗ failed.",
      "Turn 2 (“pick up the blue cube”): A ✗ failed, B ✓ succeeded.",
      "In simulation A succeeded in 1 of 2 turns, B in 1.",
      "Progress scores: A 70/100, B not given.",
      "Reason: “close”",
    ]);
  });
});

describe("vote inputs", () => {
  it("parses optional scores", () => {
    expect(parseScore("")).toBeNull();
    expect(parseScore(" 70 ")).toBe(70);
    expect(parseScore("100")).toBe(100);
    expect(parseScore("101")).toBeUndefined();
    expect(parseScore("-1")).toBeUndefined();
    expect(parseScore("5.5")).toBeUndefined();
  });

  it("maps keys 1-4 and stays out of text fields", () => {
    expect(["1", "2", "3", "4", "5"].map(shortcutChoice)).toEqual(["a", "b", "tie", "both_bad", null]);
    expect(isTyping({ tagName: "TEXTAREA" })).toBe(true);
    expect(isTyping({ tagName: "INPUT", type: "number" })).toBe(true);
    expect(isTyping({ tagName: "INPUT", type: "text" })).toBe(true);
    expect(isTyping({ tagName: "INPUT", type: "range" })).toBe(false);
    expect(isTyping({ tagName: "BUTTON" })).toBe(false);
    expect(isTyping(null)).toBe(false);
  });
});

describe("formatting", () => {
  it("writes counts, percentages and intervals for people", () => {
    expect(humanCount(1_234_567)).toBe("1.2M");
    expect(humanCount(350_000_000)).toBe("350M");
    expect(humanCount(7_000_000_000)).toBe("7.0B");
    expect(humanCount(999)).toBe("999");
    expect(humanCount(9_940)).toBe("9.9k");
    expect(humanCount(9_960)).toBe("10k");
    expect(humanCount(999_499)).toBe("999k");
    expect(humanCount(999_950)).toBe("1.0M"); // rounded first, then the unit: not "1000k"
    expect(humanCount(999_999_999)).toBe("1.0B");
    expect(humanCount(2e15)).toBe("2000T");
    expect(humanCount(null)).toBe("unknown");
    expect(pct(0.625)).toBe("63%");
    expect(pct(null)).toBe("–");
    expect(interval({ value: 0.5, ci_low: 0.25, ci_high: 0.75, n: 8 })).toBe("50% (25%–75%, n=8)");
    expect(interval({ value: null, ci_low: 0, ci_high: 1, n: 0 })).toBe("–");
  });
});

describe("heatmap colours", () => {
  it("are white at even odds and at none, and stay light", () => {
    expect(winRateColour(0.5)).toEqual([255, 255, 255]);
    expect(countColour(0, 4)).toEqual([255, 255, 255]);
    expect(countColour(0, 0)).toEqual([255, 255, 255]);
    for (const c of [winRateColour(0), winRateColour(1), countColour(4, 4)]) {
      expect(Math.min(...c)).toBeGreaterThanOrEqual(140); // dark text stays readable on it
    }
    expect(winRateColour(0)[0]).toBeGreaterThan(winRateColour(0)[2]); // losses red
    expect(winRateColour(1)[2]).toBeGreaterThan(winRateColour(1)[0]); // wins blue
  });
});

describe("cameraPose", () => {
  it("looks along the MuJoCo camera's −z with its fov", () => {
    // The scenes' front camera: xyaxes="0 1 0 -0.496 0 0.868" at (1.2, 0, 0.5), fovy 55.
    const x = [0, 1, 0], y = [-0.496, 0, 0.868];
    const z = [x[1] * y[2] - x[2] * y[1], x[2] * y[0] - x[0] * y[2], x[0] * y[1] - x[1] * y[0]];
    const xmat = [x[0], y[0], z[0], x[1], y[1], z[1], x[2], y[2], z[2]]; // columns are the axes
    const pose = cameraPose([9, 9, 9, 1.2, 0, 0.5], [...Array(9).fill(0), ...xmat], [80, 55], 1);
    expect(pose.position).toEqual([1.2, 0, 0.5]);
    expect(pose.fov).toBe(55);
    const [qx, qy, qz, qw] = pose.quaternion;
    // The rotated −z axis: −(third column of the rotation matrix of q).
    const forward = [-(2 * (qx * qz + qy * qw)), -(2 * (qy * qz - qx * qw)), -(1 - 2 * (qx * qx + qy * qy))];
    forward.forEach((v, k) => expect(v).toBeCloseTo(-z[k], 3));
    expect(forward[0]).toBeLessThan(0); // towards the robot
    expect(forward[2]).toBeLessThan(0); // and down at the table
  });
});

describe("boardHash", () => {
  it("keeps the leaderboard's filters in the hash", () => {
    expect(boardHash({})).toBe("#/leaderboard");
    expect(boardHash({ task: "lift" })).toBe("#/leaderboard?task=lift");
    expect(boardHash({ task: "next_to", scene: "bin" })).toBe("#/leaderboard?task=next_to&scene=bin");
  });
});

describe("battle state", () => {
  const one = battle({ vote: null }).turns[0];
  const running = { ...one, number: 2, status: "running" as const, episodes: [] };

  it("finds the newest finished turn and whether a turn is active", () => {
    const b = battle({ vote: null, turns: [one, running] });
    expect(lastDone(b)?.number).toBe(1);
    expect(turnActive(b)).toBe(true);
    expect(turnActive(battle({ vote: null }))).toBe(false);
    expect(latestWatched(battle({ vote: null, turns: [] }), new Set())).toBe(true);
  });

  it("opens the vote only once the newest finished turn was watched and nothing runs", () => {
    const b = battle({ vote: null });
    expect(canVote(b, new Set())).toBe(false);
    expect(canVote(b, new Set([1]))).toBe(true);
    expect(canVote(battle({ vote: null, turns: [one, running] }), new Set([1]))).toBe(false);
    expect(canVote(battle({ vote: "a" }), new Set([1]))).toBe(false);
    expect(canVote(battle({ vote: null, turns: [] }), new Set())).toBe(false);
  });
});

describe("api helpers", () => {
  it("writes the leaderboard's filters as one query string", () => {
    expect(boardQuery({})).toBe("");
    expect(boardQuery({ task: "lift", scene: "table" })).toBe("?task=lift&scene=table");
    expect(boardHash({ scene: "a b" })).toBe("#/leaderboard?scene=a+b");
  });

  it("retries transient failures with backoff, honouring retry_after_s", () => {
    const error = (status: number, retry?: number) =>
      new ApiError(status, { error: "x", detail: "y", retry_after_s: retry ?? null });
    expect(retryDelay(new TypeError("Failed to fetch"), 0)).toBe(500);
    expect(retryDelay(error(503), 2)).toBe(2000);
    expect(retryDelay(error(502), 20)).toBe(10_000);
    expect(retryDelay(error(429, 3), 0)).toBe(3000);
    expect(retryDelay(error(404), 0)).toBeNull();
    expect(retryDelay(error(500), 0)).toBeNull();
    expect(retryDelay(new Error("bug"), 0)).toBeNull();
  });
});
