/** One clock for both replays: play, pause, seek and speed over recorded frames. */
export class Timeline {
  /** Seconds of simulated time at each frame (non-decreasing). */
  readonly times: number[];
  private position = 0; // simulated seconds since the first frame
  playing = false;
  speed = 1;
  /** True once playback (not a seek) has reached the last frame at least once. */
  finished = false;

  constructor(times: number[]) {
    if (times.length === 0) throw new Error("a timeline needs at least one frame");
    this.times = times.map((t) => t - times[0]);
  }

  get duration(): number {
    return this.times[this.times.length - 1];
  }

  get time(): number {
    return this.position;
  }

  /** The last frame whose time is at or before the current position (binary search). */
  get frame(): number {
    let low = 0;
    let high = this.times.length - 1;
    while (low < high) {
      const mid = (low + high + 1) >> 1;
      if (this.times[mid] <= this.position + 1e-9) low = mid;
      else high = mid - 1;
    }
    return low;
  }

  play(): void {
    if (this.position >= this.duration) this.position = 0;
    this.playing = true;
  }

  pause(): void {
    this.playing = false;
  }

  /** Jump to a time in seconds, clamped to the recording (it does not count as watched). */
  seek(seconds: number): void {
    this.position = Math.min(Math.max(seconds, 0), this.duration);
  }

  /** Advance by wall-clock seconds (scaled by speed); stops at the end. */
  tick(wallSeconds: number): void {
    if (!this.playing) return;
    this.position += wallSeconds * this.speed;
    if (this.position >= this.duration) {
      this.position = this.duration;
      this.playing = false;
      this.finished = true;
    }
  }
}
