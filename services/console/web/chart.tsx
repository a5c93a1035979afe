// A line chart over training steps, drawn by uPlot (canvas; fast with tens of thousands of points). The
// chart is created once and fed new data as the run trains; it follows its container's width.
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export interface Line {
  label: string;
  values: (number | null)[];
  color: string;
}

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf'];
export const color = (i: number): string => PALETTE[i % PALETTE.length]!;

/** Axis ticks in at most four significant digits (uPlot's default drops the digits of small learning rates). */
function tick(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  return a < 1e-3 || a >= 1e5 ? v.toExponential(1) : String(Number(v.toPrecision(4)));
}

export function Chart(props: { title: string; x: number[]; lines: Line[]; height?: number; log?: boolean }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | undefined>(undefined);
  const shape = props.lines.map((l) => `${l.label}:${l.color}`).join('|') + String(props.log);
  const data = [props.x, ...props.lines.map((l) => l.values)] as uPlot.AlignedData;

  useEffect(() => {
    const el = box.current!;
    const u = new uPlot(
      {
        title: props.title,
        width: Math.max(240, el.clientWidth),
        height: props.height ?? 180,
        scales: { x: { time: false }, y: props.log ? { distr: 3 } : {} },
        axes: [{}, { size: 64, values: (_u, ticks) => ticks.map(tick) }],
        series: [
          { label: 'step' },
          ...props.lines.map((l) => ({ label: l.label, stroke: l.color, width: 1.5, spanGaps: true })),
        ],
        legend: { live: true },
        cursor: { drag: { x: true, y: false } },
      },
      data,
      el,
    );
    plot.current = u;
    const ro = new ResizeObserver(() =>
      u.setSize({ width: Math.max(240, el.clientWidth), height: props.height ?? 180 }),
    );
    ro.observe(el);
    return () => {
      ro.disconnect();
      u.destroy();
      plot.current = undefined;
    };
    // Rebuilt only when the set of lines changes; new points go through setData below.
  }, [shape, props.title]);

  useEffect(() => {
    plot.current?.setData(data);
  });

  return <div class="chart" ref={box} />;
}
