/**
 * The AudioWorklet processor that plays one kernel's stream, as source text:
 * it is loaded from a Blob URL, so the extension serves no file of its own.
 *
 * A jitter buffer of stereo float frames.  It starts playing once it holds
 * 'target' frames (fading in over 5 ms, any older backlog dropped); when it
 * runs dry it fades out what is left, counts an underrun, raises the target
 * by half (at most 0.5 s; not in the first 3 s of play, while the page is
 * still busy loading) and buffers again.  A backlog beyond twice the target
 * and 100 ms (messages that queued while the page was busy) is faded out and
 * dropped the same way, so the sound never lags more than that.  After 5 s
 * without an underrun, with more than two render quanta and 10 ms to spare
 * all along, it lowers the target by 10 % (not under 20 ms).  Every 50 ms it
 * reports the engine frame it is playing, so
 * the engine's clock can follow this page's audio clock.
 */
export const PROCESSOR = 'jupysynth-stream';

export const WORKLET_SOURCE = `
const CAP = 1 << 17; // frames: 2.7 s at 48 kHz
const MASK = CAP - 1;

class JupysynthStream extends AudioWorkletProcessor {
  constructor() {
    super();
    this.L = new Float32Array(CAP);
    this.R = new Float32Array(CAP);
    this.r = 0; // frames read (played) so far
    this.w = 0; // frames written so far
    this.writeFrame = -1; // the engine frame of the next frame written
    this.playing = false;
    this.gain = 0;
    this.fade = 1 / (0.005 * sampleRate);
    this.minTarget = Math.round(0.02 * sampleRate);
    this.maxTarget = Math.round(0.5 * sampleRate);
    this.target = Math.round(0.04 * sampleRate);
    this.underruns = 0;
    this.skips = 0; // backlogs dropped
    this.received = 0;
    this.flushing = false;
    this.reportEvery = Math.round(0.05 * sampleRate);
    this.sinceReport = 0;
    this.window = 0; // frames played in the current shrink window
    this.played = 0; // frames played since the stream started
    this.settle = Math.round(3 * sampleRate);
    this.windowMin = Infinity;
    this.windowUnderruns = 0;
    this.port.onmessage = (e) => this.message(e.data);
  }

  message(m) {
    if (m.type === 'audio') {
      this.push(m.frame, new Int16Array(m.pcm));
    } else if (m.type === 'flush') {
      this.flushing = true;
    }
  }

  push(frame, pcm) {
    let n = pcm.length >> 1;
    let off = 0;
    this.received += n;
    if (this.writeFrame >= 0 && frame !== this.writeFrame) {
      if (frame < this.writeFrame) {
        const skip = this.writeFrame - frame; // already have these
        if (skip >= n) return;
        off = skip;
        n -= skip;
        frame += skip;
      } else if (frame - this.writeFrame < this.target) {
        let gap = frame - this.writeFrame; // a short gap: silence in its place
        while (gap-- > 0) {
          const j = this.w & MASK;
          this.L[j] = 0;
          this.R[j] = 0;
          this.w++;
        }
      } else {
        this.r = this.w; // a long gap: start over at the new frame
        this.playing = false;
      }
    }
    if (this.w + n - this.r > CAP) this.r = this.w + n - CAP; // overflow: drop the oldest
    for (let i = 0; i < n; i++) {
      const j = (this.w + i) & MASK;
      this.L[j] = pcm[2 * (off + i)] / 32768;
      this.R[j] = pcm[2 * (off + i) + 1] / 32768;
    }
    this.w += n;
    this.writeFrame = frame + n;
  }

  process(inputs, outputs) {
    const out = outputs[0];
    const L = out[0];
    const R = out.length > 1 ? out[1] : out[0];
    const q = L.length;
    let avail = this.w - this.r;
    if (this.flushing) {
      // panic: what is left of this quantum fades out, everything buffered goes
      const n = Math.min(q, avail);
      for (let i = 0; i < n; i++) {
        const j = (this.r + i) & MASK;
        const g = this.gain * (1 - i / n);
        L[i] = this.L[j] * g;
        R[i] = this.R[j] * g;
      }
      for (let i = n; i < q; i++) { L[i] = 0; R[i] = 0; }
      this.r = this.w;
      this.playing = false;
      this.flushing = false;
      this.gain = 0;
      return true;
    }
    if (!this.playing && avail >= this.target) {
      // start (or start again) with a target of frames: a backlog older than that is
      // dropped, so the sound is never later than the buffer needs
      this.r = this.w - this.target;
      avail = this.target;
      this.playing = true;
      this.gain = 0;
    }
    if (!this.playing) {
      L.fill(0);
      if (R !== L) R.fill(0);
      return true;
    }
    if (avail > this.excess()) {
      // a backlog far beyond the target (messages queued while the page was busy):
      // fade out this quantum and start again from the newest frames
      for (let i = 0; i < q; i++) {
        const j = (this.r + i) & MASK;
        const g = this.gain * (1 - (i + 1) / q);
        L[i] = this.L[j] * g;
        R[i] = this.R[j] * g;
      }
      this.r += q;
      this.playing = false;
      this.gain = 0;
      this.skips++;
      this.report();
      return true;
    }
    if (avail < q) {
      // running dry: fade out what is left, then buffer again with a deeper target
      for (let i = 0; i < avail; i++) {
        const j = (this.r + i) & MASK;
        const g = this.gain * (1 - (i + 1) / avail);
        L[i] = this.L[j] * g;
        R[i] = this.R[j] * g;
      }
      for (let i = avail; i < q; i++) { L[i] = 0; R[i] = 0; }
      this.r += avail;
      this.playing = false;
      this.gain = 0;
      this.underruns++;
      this.windowUnderruns++;
      if (this.played > this.settle) {
        // (while the page settles after the stream starts, a dry spell is the page's
        // load, not the link's: it restarts the buffer without deepening it)
        this.target = Math.min(this.maxTarget, Math.round(this.target * 1.5));
      }
      this.report();
      return true;
    }
    for (let i = 0; i < q; i++) {
      const j = (this.r + i) & MASK;
      if (this.gain < 1) this.gain = Math.min(1, this.gain + this.fade);
      L[i] = this.L[j] * this.gain;
      R[i] = this.R[j] * this.gain;
    }
    this.r += q;
    avail -= q;
    if (avail < this.windowMin) this.windowMin = avail;
    this.window += q;
    this.played += q;
    if (this.window >= 5 * sampleRate) {
      const spare = 2 * q + 0.01 * sampleRate;
      if (this.windowUnderruns === 0 && this.windowMin > spare) {
        this.target = Math.max(this.minTarget, Math.round(this.target * 0.9));
      }
      this.window = 0;
      this.windowMin = Infinity;
      this.windowUnderruns = 0;
    }
    this.sinceReport += q;
    if (this.sinceReport >= this.reportEvery) this.report();
    return true;
  }

  excess() {
    // what the buffer may hold before the oldest goes: the target twice, and 100 ms
    return 2 * this.target + Math.round(0.1 * sampleRate);
  }

  report() {
    this.sinceReport = 0;
    this.port.postMessage({
      type: 'report',
      frame: this.writeFrame - (this.w - this.r), // the engine frame playing now
      buffered: this.w - this.r,
      target: this.target,
      underruns: this.underruns,
      skips: this.skips,
      playing: this.playing,
      received: this.received
    });
  }
}

registerProcessor('${'jupysynth-stream'}', JupysynthStream);
`;
