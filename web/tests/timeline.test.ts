import { describe, expect, it } from "vitest";
import { Timeline } from "../src/replay/timeline";

describe("Timeline", () => {
  it("maps time to the last frame at or before it", () => {
    const t = new Timeline([10, 10.1, 10.2, 10.5]);
    expect(t.duration).toBeCloseTo(0.5);
    t.seek(0.15);
    expect(t.frame).toBe(1);
    t.seek(0.2);
    expect(t.frame).toBe(2);
    t.seek(99);
    expect(t.frame).toBe(3);
    expect(t.finished).toBe(false); // dragging to the end is not watching it
    t.seek(-1);
    expect(t.frame).toBe(0);
  });

  it("plays at its speed, stops at the end and remembers it finished", () => {
    const t = new Timeline([0, 0.1, 0.2, 0.3, 0.4]);
    t.speed = 2;
    t.tick(1);
    expect(t.time).toBe(0); // paused: nothing moves
    t.play();
    t.tick(0.1);
    expect(t.frame).toBe(2);
    expect(t.finished).toBe(false);
    t.tick(1);
    expect(t.playing).toBe(false);
    expect(t.finished).toBe(true);
    expect(t.frame).toBe(4);
    t.play(); // from the end, play starts over
    expect(t.time).toBe(0);
    expect(t.finished).toBe(true);
  });

  it("refuses an empty recording", () => {
    expect(() => new Timeline([])).toThrow("at least one frame");
  });
});
