/**
 * The live loss curve, drawn as SVG: training loss per step (thin) with its moving average
 * (thick), validation loss as points joined by a dashed line, labelled axes with round ticks.
 * With `overlay`, a second run's smoothed training and validation curves are drawn over it in
 * another colour (the library's run comparison).
 */
import { type RefObject, useId, useLayoutEffect, useRef, useState } from 'react';
import type { HistoryPoint } from '../../store/types';

/** Drawing width before the figure is measured (and in tests without layout). */
const DEFAULT_W = 720;
const M = { top: 16, right: 20, bottom: 42, left: 58 };

/** Round tick values from at or below `lo` to at or above `hi` (about `count` steps). */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [];
  if (hi === lo) {
    hi = lo + 1;
    lo = lo - 1;
  }
  const raw = (hi - lo) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw * 0.999) ?? 10 * mag;
  const first = Math.floor(lo / step + 1e-9);
  const last = Math.ceil(hi / step - 1e-9);
  const out: number[] = [];
  for (let i = first; i <= last; i++) out.push(Number((i * step).toPrecision(12)));
  return out;
}

function tickLabel(v: number): string {
  if (v === 0) return '0';
  if (Math.abs(v) >= 1000) return `${Number((v / 1000).toPrecision(3))}k`;
  return String(Number(v.toPrecision(3)));
}

/**
 * The figure's width in CSS pixels, followed as it resizes: the chart is drawn at that size so its
 * text stays 12 px on a phone instead of shrinking with a fixed-size drawing.
 */
function useWidth(): [RefObject<HTMLElement | null>, number] {
  const ref = useRef<HTMLElement>(null);
  const [width, setWidth] = useState(DEFAULT_W);
  useLayoutEffect(() => {
    const el = ref.current;
    if (!el) return;
    const read = () => {
      const w = Math.round(el.clientWidth);
      if (w > 0) setWidth(Math.max(240, w));
    };
    read();
    if (typeof ResizeObserver === 'undefined') return;
    const ro = new ResizeObserver(read);
    ro.observe(el);
    return () => ro.disconnect();
  }, []);
  return [ref, width];
}

/** Exponential moving average, bias-corrected, as TensorBoard's smoothing. */
export function smooth(values: number[], weight = 0.8): number[] {
  const out: number[] = [];
  let acc = 0;
  let n = 0;
  for (const v of values) {
    acc = acc * weight + (1 - weight) * v;
    n++;
    out.push(acc / (1 - weight ** n));
  }
  return out;
}

export interface ChartOverlay {
  label: string;
  history: HistoryPoint[];
}

const finiteTrain = (h: HistoryPoint[]) =>
  h.filter((p): p is HistoryPoint & { loss: number } => p.loss !== null && Number.isFinite(p.loss));
const finiteVal = (h: HistoryPoint[]) =>
  h.filter((p): p is HistoryPoint & { valLoss: number } => p.valLoss !== null && Number.isFinite(p.valLoss));

export function LossChart({
  history,
  totalSteps,
  label,
  overlay,
}: {
  history: HistoryPoint[];
  totalSteps: number | null;
  /** The main run's name in the legend (with an overlay). */
  label?: string;
  overlay?: ChartOverlay | null;
}) {
  const [figure, W] = useWidth();
  const uid = useId();
  const H = Math.round(Math.min(300, Math.max(220, W * 0.4)));
  const narrow = W < 480;
  const train = history.filter((h): h is HistoryPoint & { loss: number } => h.loss !== null && Number.isFinite(h.loss));
  const val = history.filter(
    (h): h is HistoryPoint & { valLoss: number } => h.valLoss !== null && Number.isFinite(h.valLoss),
  );
  const lastStep = history.length ? history[history.length - 1]!.step : 0;
  const oTrain = overlay ? finiteTrain(overlay.history) : [];
  const oVal = overlay ? finiteVal(overlay.history) : [];
  const oLast = overlay?.history.length ? overlay.history[overlay.history.length - 1]!.step : 0;
  const xMax = Math.max(totalSteps ?? 0, lastStep, oLast, 1);
  const ys = [
    ...train.map((h) => h.loss),
    ...val.map((h) => h.valLoss),
    ...oTrain.map((h) => h.loss),
    ...oVal.map((h) => h.valLoss),
  ];
  const yMinRaw = ys.length ? Math.min(...ys) : 0;
  const yMaxRaw = ys.length ? Math.max(...ys) : 1;
  const pad = (yMaxRaw - yMinRaw) * 0.08 || 0.5;
  const yTicks = niceTicks(Math.max(0, yMinRaw - pad), yMaxRaw + pad, 5);
  const yLo = yTicks[0] ?? 0;
  const yHi = yTicks[yTicks.length - 1] ?? 1;
  // steps are whole numbers: no "1.5" tick on a short run
  const xTicks = niceTicks(0, xMax, narrow ? 3 : 6).filter((v) => v <= xMax && Number.isInteger(v));
  if (xTicks[xTicks.length - 1] !== xMax && xMax - (xTicks[xTicks.length - 1] ?? 0) > xMax / 12) xTicks.push(xMax);
  const iw = W - M.left - M.right;
  const ih = H - M.top - M.bottom;
  const x = (step: number) => M.left + (iw * step) / xMax;
  const y = (v: number) => M.top + ih - (ih * (v - yLo)) / Math.max(1e-12, yHi - yLo);
  const path = (pts: [number, number][]) =>
    pts.map(([a, b], i) => `${i ? 'L' : 'M'}${a.toFixed(1)},${b.toFixed(1)}`).join('');
  const sm = smooth(train.map((h) => h.loss));
  const rawPath = path(train.map((h) => [x(h.step), y(h.loss)]));
  const smoothPath = path(train.map((h, i) => [x(h.step), y(sm[i]!)]));
  const valPath = path(val.map((h) => [x(h.step), y(h.valLoss)]));
  const oSm = smooth(oTrain.map((h) => h.loss));
  const oPath = path(oTrain.map((h, i) => [x(h.step), y(oSm[i]!)]));
  const oValPath = path(oVal.map((h) => [x(h.step), y(h.valLoss)]));
  const first = train[0]?.loss;
  const last = sm[sm.length - 1];
  const desc = train.length
    ? `Training loss from ${first!.toFixed(3)} to ${last!.toFixed(3)} (smoothed) over ${lastStep} of ${xMax} steps` +
      (val.length
        ? `; validation loss ${val[val.length - 1]!.valLoss.toFixed(3)} at step ${val[val.length - 1]!.step}.`
        : '.')
    : 'No loss values yet.';
  const oDesc =
    overlay && oTrain.length
      ? ` Compared with ${overlay.label}: from ${oTrain[0]!.loss.toFixed(3)} to ${oSm[oSm.length - 1]!.toFixed(3)} (smoothed) over ${oLast} steps` +
        (oVal.length ? `, validation ${oVal[oVal.length - 1]!.valLoss.toFixed(3)}.` : '.')
      : '';
  return (
    <figure className="chart" ref={figure}>
      <svg
        viewBox={`0 0 ${W} ${H}`}
        role="img"
        aria-labelledby={`${uid}-title ${uid}-desc`}
        data-testid="loss-chart"
        data-losses={JSON.stringify(train.map((h) => Number(h.loss.toFixed(5))))}
      >
        <title id={`${uid}-title`}>Loss per step</title>
        <desc id={`${uid}-desc`}>
          {label && overlay ? `${label}: ` : ''}
          {desc}
          {oDesc}
        </desc>
        {yTicks.map((v) => (
          <g key={`y${v}`}>
            <line className="grid" x1={M.left} x2={W - M.right} y1={y(v)} y2={y(v)} />
            <text className="tick" x={M.left - 8} y={y(v)} textAnchor="end" dominantBaseline="middle">
              {tickLabel(v)}
            </text>
          </g>
        ))}
        {xTicks.map((v) => (
          <g key={`x${v}`}>
            <line className="grid light" x1={x(v)} x2={x(v)} y1={M.top} y2={M.top + ih} />
            <text className="tick" x={x(v)} y={M.top + ih + 18} textAnchor="middle">
              {tickLabel(v)}
            </text>
          </g>
        ))}
        <line className="axis" x1={M.left} x2={M.left} y1={M.top} y2={M.top + ih} />
        <line className="axis" x1={M.left} x2={W - M.right} y1={M.top + ih} y2={M.top + ih} />
        <text className="axis-label" x={M.left + iw / 2} y={H - 6} textAnchor="middle">
          step
        </text>
        <text className="axis-label" transform={`translate(16 ${M.top + ih / 2}) rotate(-90)`} textAnchor="middle">
          loss (nats / token)
        </text>
        {train.length > 1 && <path className="line-raw" d={rawPath} />}
        {train.length > 1 && <path className="line-train" d={smoothPath} />}
        {train.length === 1 && <circle className="dot-train" cx={x(train[0]!.step)} cy={y(train[0]!.loss)} r={3.5} />}
        {val.length > 1 && <path className="line-val" d={valPath} />}
        {val.map((h) => (
          <circle key={`v${h.step}`} className="dot-val" cx={x(h.step)} cy={y(h.valLoss)} r={4}>
            <title>{`validation loss ${h.valLoss.toFixed(4)} at step ${h.step}`}</title>
          </circle>
        ))}
        {oTrain.length > 1 && <path className="line-overlay" d={oPath} data-testid="overlay-line" />}
        {oVal.length > 1 && <path className="line-overlay-val" d={oValPath} />}
        {oVal.map((h) => (
          <circle key={`ov${h.step}`} className="dot-overlay" cx={x(h.step)} cy={y(h.valLoss)} r={3.5}>
            <title>{`${overlay!.label}: validation loss ${h.valLoss.toFixed(4)} at step ${h.step}`}</title>
          </circle>
        ))}
      </svg>
      <figcaption className="chart-legend">
        <span>
          <span className="key train" aria-hidden="true" /> training loss (smoothed; faint: per step)
        </span>
        <span>
          <span className="key val" aria-hidden="true" /> validation loss
        </span>
        {overlay && (
          <span>
            <span className="key overlay" aria-hidden="true" /> {overlay.label} (training smoothed; dashed: validation)
          </span>
        )}
      </figcaption>
    </figure>
  );
}
