/**
 * One kernel's link: the page's comm to jupysynth in that kernel.
 *
 * The kernel announces itself (a comm to the page's target
 * `jupysynth.kernel`, opened when `%load_ext jupysynth` runs and kept open);
 * a page loaded later finds that comm with `comm_info_request`.  Either way
 * the page opens its own comm to the kernel's target `jupysynth.page`, gets
 * a `hello` (where the sound goes, at what rate), then `status` pushes and,
 * when the engine plays in the browser, `audio` messages whose one binary
 * buffer is 16-bit stereo PCM.  The page reports back what it hears.
 */
import { Kernel, KernelMessage } from '@jupyterlab/services';
import { ISignal, Signal } from '@lumino/signaling';

import { Stream } from './audio';

/** The engine's state as the kernel pushes it (the fields of `/status`, and more). */
export type Status = { [key: string]: any };

/** How often a page with no sound to report says it is still there (ms). */
const ALIVE_MS = 5000;

/** The trip assumed until the buffer tells (seconds). */
const FIRST_TRIP = 0.02;

/** How much of the buffer's shortfall each report (every 50 ms) adds to the trip. */
const LEARN = 0.05;

/** The most the trip to this page may take (seconds): beyond, underruns grow the buffer. */
const MAX_TRIP = 0.25;

export class Link {
  readonly kernel: Kernel.IKernelConnection;
  readonly page = Math.random().toString(16).slice(2, 10);
  hello: Status | null = null;
  status: Status | null = null;
  stream: Stream | null = null;
  said = '';
  private _comm: Kernel.IComm | null = null;
  private _changed = new Signal<this, void>(this);
  private _closed = false;
  /** A newer tab on this kernel plays the sound, not this one. */
  elsewhere = false;
  /** Frames the engine's output takes to reach the worklet, learnt from its buffer. */
  private _trip = 0;

  /** The trip the engine's output takes to the worklet (frames), as learnt. */
  get trip(): number {
    return Math.round(this._trip);
  }
  private _alive: number;

  constructor(kernel: Kernel.IKernelConnection) {
    this.kernel = kernel;
    const comm = kernel.createComm('jupysynth.page');
    this._comm = comm;
    comm.onMsg = msg => this._onMsg(msg);
    comm.onClose = () => this.dispose();
    comm.open({ page: this.page, rate: 0 });
    this._alive = window.setInterval(() => this.send({ type: 'alive' }), ALIVE_MS);
  }

  /** Something new: a hello, a status, a report. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get closed(): boolean {
    return this._closed;
  }

  send(data: { [key: string]: any }): void {
    if (this._comm === null || this._closed || this._comm.isDisposed) {
      return;
    }
    try {
      this._comm.send(data);
    } catch {
      this.dispose(); // the kernel is gone
    }
  }

  command(name: string, cell?: string): void {
    this.send({ type: 'command', name, cell: cell ?? null });
  }

  /** Silence this kernel's sound in the page now (a panic works before the kernel answers). */
  flush(): void {
    this.stream?.flush();
  }

  private _onMsg(msg: KernelMessage.ICommMsgMsg): void {
    const data = msg.content.data as Status;
    switch (data.type) {
      case 'audio':
        if (this.elsewhere) {
          this.elsewhere = false;
          this._changed.emit();
        }
        this._audio(data, msg.buffers);
        return;
      case 'elsewhere':
        // a newer tab on this kernel plays the sound: this one falls quiet
        this.elsewhere = true;
        this.stream?.flush();
        break;
      case 'hello':
        this.hello = data;
        this._setup(data);
        break;
      case 'status':
        this.status = data.status as Status;
        break;
      case 'said':
        this.said = String(data.text);
        break;
      case 'bye':
        this.dispose();
        return;
    }
    this._changed.emit();
  }

  private _setup(hello: Status): void {
    const rate = Number(hello.samplerate);
    if (hello.output !== 'browser' || !rate) {
      this.stream?.dispose();
      this.stream = null;
      return;
    }
    if (this.stream !== null && this.stream.rate === rate) {
      return;
    }
    this.stream?.dispose();
    const stream = new Stream(rate);
    this._trip = FIRST_TRIP * rate;
    stream.onReport = report => {
      // The frame heard now is the worklet's less what lies between it and the ear;
      // the engine renders `target` ahead of the ear, so the worklet keeps its own
      // target when that includes the way to the ear.
      const ear = Math.round(stream.outputLatency() * rate);
      if (report.playing) {
        // what the engine renders ahead also covers the trip here (the kernel's
        // 10 ms pump, the server, this thread): that is learnt from the buffer,
        // nudged up while it holds less than its target and down while it holds more
        const step = LEARN * (report.target - report.buffered);
        this._trip = Math.min(Math.max(this._trip + step, 0), MAX_TRIP * rate);
        this.send({
          type: 'heard',
          frame: report.frame - ear,
          buffered: report.buffered,
          target: report.target + ear + Math.round(this._trip),
          underruns: report.underruns
        });
      }
      this._changed.emit();
    };
    this.stream = stream;
  }

  private _audio(data: Status, buffers: (ArrayBuffer | ArrayBufferView)[] | undefined): void {
    if (this.stream === null || !buffers || !buffers.length) {
      return;
    }
    const b = buffers[0];
    // a copy the worklet can own (the message's buffer may be a view into a larger one)
    const pcm =
      b instanceof ArrayBuffer
        ? b.slice(0)
        : (b.buffer as ArrayBuffer).slice(b.byteOffset, b.byteOffset + b.byteLength);
    this.stream.push(Number(data.frame), pcm);
  }

  dispose(): void {
    if (this._closed) {
      return;
    }
    this._closed = true;
    window.clearInterval(this._alive);
    this.stream?.dispose();
    this.stream = null;
    this._changed.emit();
  }
}
