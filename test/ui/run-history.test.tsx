// @vitest-environment jsdom
/**
 * Run history in the library (jsdom, fake engine): a trained adapter keeps its settings, data,
 * duration and loss curves, and two runs' curves are drawn over each other.
 */
import { act, fireEvent, screen, waitFor, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import type { AppController } from '../../src/ui/controller';
import { makeApp } from './helpers';
import { appTestSetup, mountApp as mount } from './app-harness';

appTestSetup();

async function trainOnce(c: AppController, steps: number) {
  c.setTrain({ steps, evalEvery: 2, checkpointEvery: 0 });
  await act(async () => {
    await c.startTraining();
  });
  await waitFor(() => expect(c.state.run.status).toBe('done'));
}

describe('library: run history', () => {
  it('keeps each run (settings, data, duration, curves) and overlays two runs', async () => {
    const { c } = await makeApp();
    c.go('library');
    mount(c);
    await trainOnce(c, 4);
    await waitFor(() => expect(screen.getAllByTestId('adapter-row')).toHaveLength(1));
    // one run: nothing to compare yet
    expect(screen.queryByTestId('compare-runs')).toBeNull();
    const details = within(screen.getByTestId('run-details'));
    expect(details.getByText(/steps · batch/).textContent).toMatch(
      /4 steps · batch \d+ × \d+ · max length \d+ .* · data demo-qa\.jsonl · trained in /,
    );
    expect(JSON.parse(details.getByTestId('loss-chart').getAttribute('data-losses')!)).toHaveLength(4);

    await trainOnce(c, 6);
    await waitFor(() => expect(screen.getAllByTestId('adapter-row')).toHaveLength(2));
    const cmp = within(screen.getByTestId('compare-runs'));
    const [a, b] = c.state.library.adapters;
    expect(a && b).toBeTruthy();
    const chart = cmp.getByTestId('loss-chart');
    expect(JSON.parse(chart.getAttribute('data-losses')!).length).toBe(
      a!.history.filter((h) => h.loss !== null).length,
    );
    expect(cmp.getByTestId('overlay-line')).toBeTruthy();
    expect(chart.querySelector('desc')!.textContent).toContain(`Compared with ${b!.name}`);
    // picking the runs the other way round swaps them
    fireEvent.change(cmp.getByLabelText('Run'), { target: { value: b!.id } });
    fireEvent.change(cmp.getByLabelText('over'), { target: { value: a!.id } });
    expect(cmp.getByTestId('loss-chart').querySelector('desc')!.textContent).toContain(`Compared with ${a!.name}`);
    // every chart's title and description ids are its own
    const ids = [...document.querySelectorAll('svg[aria-labelledby]')].flatMap((s) =>
      s.getAttribute('aria-labelledby')!.split(' '),
    );
    expect(new Set(ids).size).toBe(ids.length);
  });
});
