/**
 * The page's audio: one AudioContext per sample rate, one worklet node per kernel stream.
 *
 * A context is made at the engine's rate, so the engine never resamples (the
 * browser resamples to the hardware's rate).  Every stream goes through its
 * own gain into the context's destination and into one AnalyserNode per
 * context, which the level meter and the tests read.
 */
import { PROCESSOR, WORKLET_SOURCE } from './worklet';

/** What a stream's worklet last reported. */
export interface IReport {
  frame: number;
  buffered: number;
  target: number;
  underruns: number;
  skips: number;
  playing: boolean;
  received: number;
}

interface IContext {
  ctx: AudioContext;
  analyser: AnalyserNode;
  ready: Promise<void>;
}

const contexts = new Map<number, IContext>();
let moduleUrl: string | null = null;

function contextAt(rate: number): IContext {
  let found = contexts.get(rate);
  if (found) {
    return found;
  }
  const ctx = new AudioContext({ sampleRate: rate, latencyHint: 'interactive' });
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 8192;
  analyser.smoothingTimeConstant = 0;
  if (moduleUrl === null) {
    moduleUrl = URL.createObjectURL(
      new Blob([WORKLET_SOURCE], { type: 'application/javascript' })
    );
  }
  const ready = ctx.audioWorklet.addModule(moduleUrl);
  found = { ctx, analyser, ready };
  contexts.set(rate, found);
  return found;
}

/** One kernel's sound in this page. */
export class Stream {
  readonly rate: number;
  report: IReport | null = null;
  bytes = 0;
  onReport: ((report: IReport) => void) | null = null;
  private _node: AudioWorkletNode | null = null;
  private _gain: GainNode | null = null;
  private _queue: { frame: number; pcm: ArrayBuffer }[] = [];
  private _disposed = false;
  private _context: IContext;

  constructor(rate: number) {
    this.rate = rate;
    this._context = contextAt(rate);
    void this._context.ready.then(() => this._start());
  }

  get context(): AudioContext {
    return this._context.ctx;
  }

  private _start(): void {
    if (this._disposed) {
      return;
    }
    const { ctx, analyser } = this._context;
    const node = new AudioWorkletNode(ctx, PROCESSOR, {
      numberOfInputs: 0,
      numberOfOutputs: 1,
      outputChannelCount: [2]
    });
    node.port.onmessage = (e: MessageEvent) => {
      if (e.data.type === 'report') {
        this.report = e.data as IReport;
        if (this.onReport) {
          this.onReport(this.report);
        }
      }
    };
    const gain = ctx.createGain();
    node.connect(gain);
    gain.connect(ctx.destination);
    gain.connect(analyser);
    this._node = node;
    this._gain = gain;
    for (const chunk of this._queue) {
      this._post(chunk.frame, chunk.pcm);
    }
    this._queue = [];
  }

  /** Frames from the kernel: `pcm` is interleaved stereo int16, starting at engine `frame`. */
  push(frame: number, pcm: ArrayBuffer): void {
    this.bytes += pcm.byteLength;
    if (this._node === null) {
      this._queue.push({ frame, pcm });
      return;
    }
    this._post(frame, pcm);
  }

  private _post(frame: number, pcm: ArrayBuffer): void {
    this._node!.port.postMessage({ type: 'audio', frame, pcm }, [pcm]);
  }

  /** Silence at once (within one render quantum) and drop what is buffered. */
  flush(): void {
    this._queue = [];
    if (this._node !== null) {
      this._node.port.postMessage({ type: 'flush' });
    }
  }

  /** The seconds from the frame the worklet plays to the listener's ear. */
  outputLatency(): number {
    const ctx = this._context.ctx;
    return (ctx.outputLatency || 0) + (ctx.baseLatency || 0);
  }

  dispose(): void {
    this._disposed = true;
    if (this._node !== null) {
      this._node.port.postMessage({ type: 'flush' });
      this._node.disconnect();
      this._gain!.disconnect();
      this._node = null;
    }
  }
}

/** Every audio context of the page. */
export function allContexts(): AudioContext[] {
  return [...contexts.values()].map(c => c.ctx);
}

/** Every analyser of the page (one per context). */
export function allAnalysers(): AnalyserNode[] {
  return [...contexts.values()].map(c => c.analyser);
}

/** Whether some context waits for a user gesture (the autoplay policy). */
export function suspended(): boolean {
  return allContexts().some(ctx => ctx.state === 'suspended');
}

/** Resume every context (call from a click). */
export async function resumeAll(): Promise<void> {
  await Promise.all(allContexts().map(ctx => ctx.resume()));
}

/** RMS of the newest analyser frames over all contexts. */
export function level(): number {
  let sum = 0;
  let n = 0;
  for (const a of allAnalysers()) {
    const buf = new Float32Array(a.fftSize);
    a.getFloatTimeDomainData(buf);
    for (const x of buf) {
      sum += x * x;
    }
    n += buf.length;
  }
  return n ? Math.sqrt(sum / n) : 0;
}

/** The frequency of the strongest analyser bin (parabolic interpolation), or 0. */
export function peakHz(): number {
  let best = -Infinity;
  let hz = 0;
  for (const a of allAnalysers()) {
    const db = new Float32Array(a.frequencyBinCount);
    a.getFloatFrequencyData(db);
    for (let k = 1; k < db.length - 1; k++) {
      if (db[k] > best) {
        best = db[k];
        const p = (0.5 * (db[k - 1] - db[k + 1])) / (db[k - 1] - 2 * db[k] + db[k + 1] || 1);
        hz = ((k + p) * a.context.sampleRate) / a.fftSize;
      }
    }
  }
  return best > -120 ? hz : 0;
}
