/**
 * jupysynth in JupyterLab and Notebook 7: a link to jupysynth in each notebook's
 * kernel, the ♪ status item, the panic / restart / mute-cell commands, and the
 * engine's sound played in the page when the kernel has no sound card.
 */
import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { Kernel } from '@jupyterlab/services';
import { IStatusBar } from '@jupyterlab/statusbar';

import { allAnalysers, allContexts, level, peakHz, resumeAll } from './audio';
import { Link } from './link';
import { StatusItem } from './status';

const CATEGORY = 'jupysynth';

/** The links of this page, one per kernel (two views of one kernel share it). */
const links = new Map<string, Link>();
const registered = new WeakSet<Kernel.IKernelConnection>();

function linkOf(kernel: Kernel.IKernelConnection | null | undefined): Link | null {
  if (!kernel) {
    return null;
  }
  const link = links.get(kernel.id);
  return link && !link.closed ? link : null;
}

/** Open the page's link to jupysynth in `kernel`, unless one is open. */
function connect(kernel: Kernel.IKernelConnection, onNew: (link: Link) => void): void {
  if (linkOf(kernel) !== null || kernel.isDisposed) {
    return;
  }
  const link = new Link(kernel);
  links.set(kernel.id, link);
  onNew(link);
}

/** Watch `kernel` for jupysynth: its announcement now, or one made earlier. */
function watch(kernel: Kernel.IKernelConnection, onNew: (link: Link) => void): void {
  if (!registered.has(kernel)) {
    registered.add(kernel);
    kernel.registerCommTarget('jupysynth.kernel', () => connect(kernel, onNew));
    kernel.statusChanged.connect((_, status) => {
      if (status === 'restarting' || status === 'autorestarting' || status === 'dead') {
        linkOf(kernel)?.dispose(); // the new kernel announces itself after %load_ext
      }
    });
  }
  void kernel
    .requestCommInfo({ target_name: 'jupysynth.kernel' })
    .then(reply => {
      const content = reply.content as { status: string; comms?: object };
      if (content.status === 'ok' && content.comms && Object.keys(content.comms).length) {
        connect(kernel, onNew);
      }
    })
    .catch(() => undefined); // a kernel that is going away
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupysynth:plugin',
  description: 'The jupysynth engine: status, panic, and its sound in the page',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [IStatusBar, ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    statusBar: IStatusBar | null,
    palette: ICommandPalette | null
  ) => {
    const item = new StatusItem();
    const current = (): Link | null =>
      linkOf(tracker.currentWidget?.sessionContext.session?.kernel);
    const show = () => {
      item.link = current();
    };
    const onNew = (link: Link) => {
      link.changed.connect(() => {
        if (current() === link) {
          item.refresh();
        }
      });
      show();
    };

    const follow = (panel: NotebookPanel) => {
      const ctx = panel.sessionContext;
      const attach = () => {
        const kernel = ctx.session?.kernel;
        if (kernel) {
          watch(kernel, onNew);
        }
        show();
      };
      ctx.kernelChanged.connect(attach);
      ctx.statusChanged.connect((_, status) => {
        if (status === 'idle' && linkOf(ctx.session?.kernel) === null) {
          attach(); // after a restart, or a page reload: look for jupysynth again
        }
      });
      void ctx.ready.then(attach);
    };
    tracker.forEach(follow);
    tracker.widgetAdded.connect((_, panel) => follow(panel));
    tracker.currentChanged.connect(show);

    if (statusBar) {
      statusBar.registerStatusItem('jupysynth:status', {
        item,
        align: 'left',
        rank: 4
      });
    } else {
      // Notebook 7 has no status bar: the item goes in each notebook's toolbar
      tracker.widgetAdded.connect((_, panel) => {
        if (!item.isAttached) {
          panel.toolbar.insertItem(100, 'jupysynth-status', item);
        }
      });
    }

    app.commands.addCommand('jupysynth:panic', {
      label: 'Stop all sound (panic)',
      caption: 'Silence the page at once and tell the engine to stop everything',
      execute: () => {
        for (const link of links.values()) {
          link.flush(); // the page goes quiet now, even while the kernel is busy
        }
        current()?.command('panic');
      }
    });
    app.commands.addCommand('jupysynth:restart', {
      label: 'Restart the synth engine',
      execute: () => current()?.command('restart')
    });
    app.commands.addCommand('jupysynth:mute-cell', {
      label: "Mute the current cell's sound",
      execute: () => {
        const cell = tracker.activeCell;
        if (cell) {
          current()?.command('mute_cell', cell.model.id);
        }
      }
    });
    app.commands.addCommand('jupysynth:enable-sound', {
      label: 'Enable sound in this page',
      execute: () => resumeAll()
    });
    for (const keys of [['Accel .'], ['Ctrl .']]) {
      app.commands.addKeyBinding({ command: 'jupysynth:panic', keys, selector: 'body' });
    }
    if (palette) {
      for (const command of [
        'jupysynth:panic',
        'jupysynth:restart',
        'jupysynth:mute-cell',
        'jupysynth:enable-sound'
      ]) {
        palette.addItem({ command, category: CATEGORY });
      }
    }
    // the browser may hold sound back until a gesture: any click on the page resumes it
    document.addEventListener('click', () => void resumeAll(), { capture: true });

    // read by the tests and benchmarks (tests/browser, benchmarks/browser.py)
    (window as any).jupysynth = {
      contexts: () => allContexts().map(c => ({ rate: c.sampleRate, state: c.state })),
      analysers: allAnalysers,
      level,
      peakHz,
      stats: () =>
        [...links.values()]
          .filter(l => l.stream !== null)
          .map(l => ({
            kernel: l.kernel.id,
            rate: l.stream!.rate,
            trip: l.trip,
            buffered: l.stream!.report?.buffered ?? 0,
            target: l.stream!.report?.target ?? 0,
            underruns: l.stream!.report?.underruns ?? 0,
            skips: l.stream!.report?.skips ?? 0,
            playing: l.stream!.report?.playing ?? false,
            framesReceived: l.stream!.report?.received ?? 0,
            bytesReceived: l.stream!.bytes
          })),
      status: () => current()?.status ?? null
    };
  }
};

export default plugin;
