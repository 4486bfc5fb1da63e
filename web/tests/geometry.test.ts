import { describe, expect, it } from "vitest";
import { geomColor, matToQuaternion, meshArrays } from "../src/replay/geometry";

/** Rotate v by quaternion q = [x, y, z, w]. */
function rotate(q: number[], v: number[]): number[] {
  const [x, y, z, w] = q;
  const m = [
    1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
    2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
    2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
  ];
  return [0, 1, 2].map((r) => m[3 * r] * v[0] + m[3 * r + 1] * v[1] + m[3 * r + 2] * v[2]);
}

describe("matToQuaternion", () => {
  it("recovers rotations in every branch (trace > 0 and each dominant axis)", () => {
    const c = Math.cos(2.5), s = Math.sin(2.5);
    const cases = [
      [1, 0, 0, 0, 1, 0, 0, 0, 1], // identity
      [c, -s, 0, s, c, 0, 0, 0, 1], // 143° about z
      [1, 0, 0, 0, -1, 0, 0, 0, -1], // 180° about x
      [-1, 0, 0, 0, 1, 0, 0, 0, -1], // 180° about y
      [-1, 0, 0, 0, -1, 0, 0, 0, 1], // 180° about z
    ];
    for (const m of cases) {
      const q = matToQuaternion([0, 0, ...m], 2); // reads at an offset, as from geom_xmat
      expect(Math.hypot(...q)).toBeCloseTo(1);
      for (const axis of [[1, 0, 0], [0, 1, 0], [0, 0, 1]]) {
        const expected = [0, 1, 2].map((r) => m[3 * r] * axis[0] + m[3 * r + 1] * axis[1] + m[3 * r + 2] * axis[2]);
        rotate(q, axis).forEach((v, k) => expect(v).toBeCloseTo(expected[k]));
      }
    }
  });
});

describe("meshArrays", () => {
  it("cuts one mesh out of the concatenated arrays", () => {
    const vert = [9, 9, 9, 0, 0, 0, 1, 0, 0, 0, 1, 0];
    const face = [0, 0, 0, 0, 1, 2];
    const { positions, indices } = meshArrays(vert, face, 1, 3, 1, 1);
    expect(Array.from(positions)).toEqual([0, 0, 0, 1, 0, 0, 0, 1, 0]);
    expect(Array.from(indices)).toEqual([0, 1, 2]);
    expect(() => meshArrays(vert, [0, 1, 5], 1, 3, 0, 1)).toThrow("outside");
  });
});

describe("geomColor", () => {
  it("prefers the material's colour", () => {
    const geom = [1, 0, 0, 1, 0, 1, 0, 0.5];
    const mat = [0, 0, 1, 1];
    expect(geomColor(geom, mat, 1, -1)).toEqual([0, 1, 0, 0.5]);
    expect(geomColor(geom, mat, 1, 0)).toEqual([0, 0, 1, 1]);
  });
});
