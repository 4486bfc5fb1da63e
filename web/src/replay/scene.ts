/** A MuJoCo scene rebuilt in the browser (WebAssembly) and drawn with three.js. */
import loadMujoco, { type MainModule, type MjData, type MjModel, type MjVFS } from "@mujoco/mujoco";
import * as THREE from "three";
import { OrbitControls } from "three/examples/jsm/controls/OrbitControls.js";

import { cameraPose, GEOM, geomColor, matToQuaternion, meshArrays, OBJ_CAMERA } from "./geometry";

/** How a replay is viewed: the free orbit view, or one of the model's named cameras. */
export const FREE_VIEW = "free";

let module: Promise<MainModule> | null = null;

/** The WebAssembly module, loaded once per page. */
export function mujoco(): Promise<MainModule> {
  module ??= loadMujoco();
  return module;
}

interface Manifest {
  root: string;
  files: { path: string; url: string }[];
}

const sceneFiles = new Map<string, Promise<Map<string, Uint8Array>>>();

/** The scene's MJCF and meshes, fetched once per scene through the arena. */
function fetchScene(sceneId: string): Promise<Map<string, Uint8Array>> {
  let files = sceneFiles.get(sceneId);
  if (!files) {
    files = (async () => {
      const bytes = async (url: string) => {
        const reply = await fetch(url);
        if (!reply.ok) throw new Error(`${url}: HTTP ${reply.status}`);
        return new Uint8Array(await reply.arrayBuffer());
      };
      const manifest: Manifest = JSON.parse(new TextDecoder().decode(
        await bytes(`/api/scenes/${sceneId}/manifest`)));
      const entries = await Promise.all(manifest.files.map(async (f) => [f.path, await bytes(f.url)] as const));
      return new Map([["__root__", new TextEncoder().encode(manifest.root)], ...entries]);
    })();
    files.catch(() => sceneFiles.delete(sceneId)); // a failed fetch is retried next time
    sceneFiles.set(sceneId, files);
  }
  return files;
}

/** Live replays and the WebAssembly heap's size, readable as `vlarenaStats` (tests watch them). */
export const stats = { liveReplays: 0, wasmHeapBytes: 0 };
(globalThis as { vlarenaStats?: typeof stats }).vlarenaStats = stats;

const VISIBLE_GROUPS = new Set([0, 1, 2]); // MuJoCo's default: collision-only geoms sit in 3

/** One replay: a canvas, a MuJoCo model and data, and a three.js mesh per visible geom. */
export class ReplayView {
  private readonly renderer: THREE.WebGLRenderer;
  private readonly scene = new THREE.Scene();
  private readonly camera: THREE.PerspectiveCamera; // the free orbit view
  private readonly fixedCamera = new THREE.PerspectiveCamera(45, 1, 0.01, 20); // a MuJoCo camera's
  private cameraId = -1; // the MuJoCo camera viewed from; -1: the free orbit view
  private readonly controls: OrbitControls;
  private readonly meshes: [number, THREE.Mesh][] = [];
  private disposed = false;

  private constructor(
    readonly canvas: HTMLCanvasElement,
    private readonly mj: MainModule,
    private readonly model: MjModel,
    private readonly data: MjData,
  ) {
    this.renderer = new THREE.WebGLRenderer({ canvas, antialias: true, preserveDrawingBuffer: true });
    this.renderer.setPixelRatio(Math.min(window.devicePixelRatio, 2));
    this.scene.background = new THREE.Color(0xf2f2f2);
    this.scene.add(new THREE.HemisphereLight(0xffffff, 0x666666, 2.2));
    const sun = new THREE.DirectionalLight(0xffffff, 1.5);
    sun.position.set(1, -1, 2);
    this.scene.add(sun);
    this.camera = new THREE.PerspectiveCamera(45, 1, 0.01, 20);
    this.camera.up.set(0, 0, 1); // MuJoCo is z-up
    this.camera.position.set(1.5, 0.9, 0.9);
    this.controls = new OrbitControls(this.camera, canvas);
    this.controls.target.set(0.4, 0, 0.15);
    this.controls.update();
    try {
      this.buildGeoms();
    } catch (error) {
      this.releaseGraphics();
      throw error;
    }
    stats.liveReplays += 1;
    stats.wasmHeapBytes = (data.qpos as Float64Array).buffer.byteLength; // a view into the heap
  }

  /** Load the scene's model in the browser; throws if the files do not compile. */
  static async create(canvas: HTMLCanvasElement, sceneId: string): Promise<ReplayView> {
    const [mj, files] = await Promise.all([mujoco(), fetchScene(sceneId)]);
    const vfs: MjVFS = new mj.MjVFS();
    let model: MjModel | null = null;
    let data: MjData | null = null;
    try {
      for (const [path, bytes] of files) if (path !== "__root__") vfs.addBuffer(path, bytes);
      model = mj.MjModel.from_xml_path(new TextDecoder().decode(files.get("__root__")), vfs);
      data = new mj.MjData(model);
      return new ReplayView(canvas, mj, model, data);
    } catch (error) {
      data?.delete(); // the view never came to own them
      model?.delete();
      throw error;
    } finally {
      vfs.delete();
    }
  }

  get nq(): number {
    return this.model.nq;
  }

  private buildGeoms(): void {
    const m = this.model;
    for (let g = 0; g < m.ngeom; g++) {
      if (!VISIBLE_GROUPS.has(m.geom_group[g])) continue;
      const geometry = this.geometry(g);
      if (!geometry) continue;
      const [r, gr, b, a] = geomColor(m.geom_rgba, m.mat_rgba, g, m.geom_matid[g]);
      const material = new THREE.MeshStandardMaterial({
        color: new THREE.Color(r, gr, b), transparent: a < 1, opacity: a, roughness: 0.6,
      });
      const mesh = new THREE.Mesh(geometry, material);
      this.scene.add(mesh);
      this.meshes.push([g, mesh]);
    }
  }

  private geometry(g: number): THREE.BufferGeometry | null {
    const m = this.model;
    const s = [m.geom_size[3 * g], m.geom_size[3 * g + 1], m.geom_size[3 * g + 2]];
    switch (m.geom_type[g]) {
      case GEOM.plane:
        return new THREE.PlaneGeometry(2 * (s[0] || 2), 2 * (s[1] || 2));
      case GEOM.sphere:
        return new THREE.SphereGeometry(s[0], 24, 16);
      case GEOM.ellipsoid:
        return new THREE.SphereGeometry(1, 24, 16).scale(s[0], s[1], s[2]);
      case GEOM.box:
        return new THREE.BoxGeometry(2 * s[0], 2 * s[1], 2 * s[2]);
      case GEOM.cylinder:
        return new THREE.CylinderGeometry(s[0], s[0], 2 * s[1], 24).rotateX(Math.PI / 2);
      case GEOM.capsule:
        return new THREE.CapsuleGeometry(s[0], 2 * s[1], 8, 16).rotateX(Math.PI / 2);
      case GEOM.mesh: {
        const id = m.geom_dataid[g];
        const { positions, indices } = meshArrays(m.mesh_vert, m.mesh_face, m.mesh_vertadr[id],
          m.mesh_vertnum[id], m.mesh_faceadr[id], m.mesh_facenum[id]);
        const geometry = new THREE.BufferGeometry();
        geometry.setAttribute("position", new THREE.BufferAttribute(positions, 3));
        geometry.setIndex(new THREE.BufferAttribute(indices, 1));
        geometry.computeVertexNormals();
        return geometry;
      }
      default:
        return null;
    }
  }

  /** Show the state with these joint positions (mj_forward, then move every mesh). */
  setQpos(qpos: ArrayLike<number>): void {
    if (this.disposed) return;
    if (qpos.length !== this.model.nq) {
      throw new Error(`qpos has ${qpos.length} values; the model has nq = ${this.model.nq}`);
    }
    this.data.qpos.set(qpos);
    this.mj.mj_forward(this.model, this.data);
    this.placeFixedCamera();
    const xpos = this.data.geom_xpos;
    const xmat = this.data.geom_xmat;
    for (const [g, mesh] of this.meshes) {
      mesh.position.set(xpos[3 * g], xpos[3 * g + 1], xpos[3 * g + 2]);
      mesh.quaternion.set(...matToQuaternion(xmat, 9 * g));
    }
    this.render();
  }

  /** The model's named cameras (e.g. "front" in the world, "wrist" on the hand). */
  cameraNames(): string[] {
    return Array.from({ length: this.model.ncam }, (_, k) => this.mj.mj_id2name(this.model, OBJ_CAMERA, k))
      .filter((name) => name !== "");
  }

  /** View from a named MuJoCo camera, or from the free orbit view (`FREE_VIEW`). */
  setCamera(name: string): void {
    if (this.disposed) return;
    if (name === FREE_VIEW) {
      this.cameraId = -1;
    } else {
      const id = this.mj.mj_name2id(this.model, OBJ_CAMERA, name);
      if (id < 0) throw new Error(`the scene has no camera named ${name}; it has ${this.cameraNames().join(", ")}`);
      this.cameraId = id;
    }
    this.controls.enabled = this.cameraId < 0; // a MuJoCo camera moves with the state, not the mouse
    this.placeFixedCamera();
    this.render();
  }

  /** Put the fixed camera where the MuJoCo camera is in the current state (after mj_forward). */
  private placeFixedCamera(): void {
    if (this.cameraId < 0) return;
    const pose = cameraPose(this.data.cam_xpos, this.data.cam_xmat, this.model.cam_fovy, this.cameraId);
    this.fixedCamera.position.set(...pose.position);
    this.fixedCamera.quaternion.set(...pose.quaternion);
    if (this.fixedCamera.fov !== pose.fov) {
      this.fixedCamera.fov = pose.fov;
      this.fixedCamera.updateProjectionMatrix();
    }
  }

  render(): void {
    if (this.disposed) return;
    const { clientWidth: w, clientHeight: h } = this.canvas;
    const ratio = this.renderer.getPixelRatio();
    if (this.canvas.width !== Math.floor(w * ratio) || this.canvas.height !== Math.floor(h * ratio)) {
      this.renderer.setSize(w, h, false);
    }
    const camera = this.cameraId < 0 ? this.camera : this.fixedCamera;
    const aspect = w / Math.max(h, 1);
    if (camera.aspect !== aspect) {
      camera.aspect = aspect;
      camera.updateProjectionMatrix();
    }
    this.renderer.render(this.scene, camera);
  }

  onCameraChange(listener: () => void): void {
    this.controls.addEventListener("change", listener);
  }

  /** Free the WebAssembly objects and the GPU buffers (memory stays bounded over battles). */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    stats.liveReplays -= 1;
    this.releaseGraphics();
    this.data.delete();
    this.model.delete();
  }

  private releaseGraphics(): void {
    this.controls.dispose();
    for (const [, mesh] of this.meshes) {
      mesh.geometry.dispose();
      (mesh.material as THREE.Material).dispose();
    }
    this.renderer.dispose();
    this.renderer.forceContextLoss(); // browsers allow only a few live WebGL contexts
  }
}
