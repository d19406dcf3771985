/**
 * The ♪ status item: the current notebook's engine, from the kernel's pushes.
 *
 * Shows playing / silent / stopped / faulted, where the sound goes, DSP load,
 * xruns and latency; "click to enable sound" while the browser holds the
 * page's audio back.  A click opens the details (every `/status` field, the
 * faults with the module's name, the page's jitter buffer).
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { resumeAll, suspended } from './audio';
import { Link, Status } from './link';

/** The item's state: also its `data-state` attribute. */
export function stateOf(link: Link | null): string {
  if (link === null || link.closed) {
    return 'none';
  }
  if (link.stream !== null && suspended()) {
    return 'suspended';
  }
  const s = link.status;
  if (s === null) {
    return 'none';
  }
  if (!s.running) {
    return 'stopped';
  }
  if (s.faults && Object.keys(s.faults).length) {
    return 'faulted';
  }
  return s.outputs > 0 ? 'playing' : 'silent';
}

function where(s: Status, link: Link): string {
  if (s.output === 'browser') {
    return link.elsewhere ? 'browser, in another tab' : 'browser';
  }
  if (s.output === 'device') {
    return String(s.device || 'device');
  }
  return 'headless';
}

function latencyMs(link: Link): number {
  const s = link.status!;
  const page = link.stream !== null ? link.stream.outputLatency() : 0;
  return (Number(s.latency) + page) * 1000;
}

/** The one line the item shows. */
export function summary(link: Link | null): string {
  const state = stateOf(link);
  if (state === 'none') {
    return '';
  }
  if (state === 'suspended') {
    return '♪ jupysynth: click to enable sound';
  }
  const s = link!.status!;
  if (state === 'stopped') {
    return '♪ stopped';
  }
  const parts = [
    state === 'faulted' ? `faulted (${Object.keys(s.faults).length})` : state,
    where(s, link!),
    `DSP ${Math.round(Number(s.dsp_load) * 100)}%`,
    `${s.xruns} xruns`,
    `${Math.round(latencyMs(link!))} ms`
  ];
  const page = link!.stream?.report;
  if (page && page.underruns) {
    parts.push(`${page.underruns} underruns`);
  }
  return '♪ ' + parts.join(' · ');
}

function detailsBody(link: Link): Widget {
  const node = document.createElement('div');
  node.className = 'jupysynth-details';
  const table = document.createElement('table');
  const row = (key: string, value: string) => {
    const tr = table.insertRow();
    tr.insertCell().textContent = key;
    const pre = document.createElement('pre');
    pre.textContent = value;
    tr.insertCell().appendChild(pre);
  };
  const s = link.status ?? {};
  for (const [key, value] of Object.entries(s)) {
    if (key === 'faults' || key === 'browser') {
      continue;
    }
    row(key, typeof value === 'object' ? JSON.stringify(value) : String(value));
  }
  const faults = (s.faults ?? {}) as { [id: string]: string };
  for (const [id, text] of Object.entries(faults)) {
    row(`fault #${id}`, text);
  }
  const page = link.stream?.report;
  if (page) {
    const ms = (frames: number) => `${((frames / link.stream!.rate) * 1000).toFixed(0)} ms`;
    row('page buffer', `${ms(page.buffered)} (target ${ms(page.target)})`);
    row('page underruns', `${page.underruns} (backlogs dropped: ${page.skips})`);
    row('trip to this page', ms(link.trip));
    row('page audio', `${link.stream!.context.state}, ${link.stream!.rate} Hz`);
  }
  if (link.elsewhere) {
    row('this tab', 'quiet: a newer tab on this kernel plays the sound');
  }
  if (link.said) {
    row('last command', link.said);
  }
  node.appendChild(table);
  return new Widget({ node });
}

export class StatusItem extends Widget {
  private _link: Link | null = null;

  constructor() {
    super();
    this.addClass('jupysynth-status');
    this.node.title = 'jupysynth engine: click for details';
    this.node.addEventListener('click', () => void this._click());
    this.refresh();
  }

  set link(link: Link | null) {
    if (this._link !== null) {
      this._link.changed.disconnect(this._changed, this);
    }
    this._link = link;
    if (link !== null) {
      link.changed.connect(this._changed, this);
    }
    this.refresh();
  }

  private _changed(): void {
    this.refresh();
  }

  refresh(): void {
    const state = stateOf(this._link);
    this.node.dataset.state = state;
    this.node.textContent = summary(this._link);
    this.node.style.display = state === 'none' ? 'none' : '';
  }

  private async _click(): Promise<void> {
    if (suspended()) {
      await resumeAll();
      this.refresh();
      return;
    }
    if (this._link === null) {
      return;
    }
    await showDialog({
      title: 'jupysynth engine',
      body: detailsBody(this._link),
      buttons: [Dialog.okButton({ label: 'Close' })]
    });
  }
}
