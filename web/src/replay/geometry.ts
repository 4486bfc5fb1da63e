/** Pure helpers that turn MuJoCo's arrays into what three.js draws. */

/** MuJoCo's row-major 3x3 rotation (at `offset`) as a quaternion [x, y, z, w]. */
export function matToQuaternion(m: ArrayLike<number>, offset = 0): [number, number, number, number] {
  const [m00, m01, m02, m10, m11, m12, m20, m21, m22] = Array.from({ length: 9 }, (_, k) => m[offset + k]);
  const trace = m00 + m11 + m22;
  if (trace > 0) {
    const s = 0.5 / Math.sqrt(trace + 1);
    return [(m21 - m12) * s, (m02 - m20) * s, (m10 - m01) * s, 0.25 / s];
  }
  if (m00 > m11 && m00 > m22) {
    const s = 2 * Math.sqrt(1 + m00 - m11 - m22);
    return [0.25 * s, (m01 + m10) / s, (m02 + m20) / s, (m21 - m12) / s];
  }
  if (m11 > m22) {
    const s = 2 * Math.sqrt(1 + m11 - m00 - m22);
    return [(m01 + m10) / s, 0.25 * s, (m12 + m21) / s, (m02 - m20) / s];
  }
  const s = 2 * Math.sqrt(1 + m22 - m00 - m11);
  return [(m02 + m20) / s, (m12 + m21) / s, 0.25 * s, (m10 - m01) / s];
}

/** One mesh's vertices and triangle indices, cut out of the model's concatenated arrays. */
export function meshArrays(
  vert: ArrayLike<number>,
  face: ArrayLike<number>,
  vertAdr: number,
  vertNum: number,
  faceAdr: number,
  faceNum: number,
): { positions: Float32Array; indices: Uint32Array } {
  const positions = Float32Array.from({ length: vertNum * 3 }, (_, k) => vert[vertAdr * 3 + k]);
  const indices = Uint32Array.from({ length: faceNum * 3 }, (_, k) => face[faceAdr * 3 + k]);
  for (const index of indices) {
    if (index >= vertNum) throw new Error(`face index ${index} outside ${vertNum} vertices`);
  }
  return { positions, indices };
}

/** A geom's colour: its material's if it has one, else its own rgba. */
export function geomColor(
  geomRgba: ArrayLike<number>,
  matRgba: ArrayLike<number>,
  geom: number,
  matId: number,
): [number, number, number, number] {
  const source = matId >= 0 ? matRgba : geomRgba;
  const at = (matId >= 0 ? matId : geom) * 4;
  return [source[at], source[at + 1], source[at + 2], source[at + 3]];
}

/** MuJoCo geom types (mjtGeom) the replay draws. */
export const GEOM = { plane: 0, sphere: 2, capsule: 3, ellipsoid: 4, cylinder: 5, box: 6, mesh: 7 } as const;

/** MuJoCo's mjtObj value for cameras (mj_name2id / mj_id2name). */
export const OBJ_CAMERA = 7;

/**
 * A MuJoCo camera's pose for three.js: its position, its orientation (cam_xmat, whose columns
 * are the camera's axes in the world; both libraries' cameras look along −z with +y up) and its
 * vertical field of view in degrees.
 */
export function cameraPose(
  camXpos: ArrayLike<number>,
  camXmat: ArrayLike<number>,
  camFovy: ArrayLike<number>,
  id: number,
): { position: [number, number, number]; quaternion: [number, number, number, number]; fov: number } {
  return {
    position: [camXpos[3 * id], camXpos[3 * id + 1], camXpos[3 * id + 2]],
    quaternion: matToQuaternion(camXmat, 9 * id),
    fov: camFovy[id],
  };
}
