// ECharts, only the parts used.
import * as echarts from 'echarts/core';
import { BarChart, LineChart, PieChart } from 'echarts/charts';
import {
  GridComponent, TooltipComponent, LegendComponent, MarkLineComponent, MarkPointComponent,
  TitleComponent,
} from 'echarts/components';
import { CanvasRenderer } from 'echarts/renderers';
import { shortNumber } from './format.js';

echarts.use([BarChart, LineChart, PieChart, GridComponent, TooltipComponent, LegendComponent,
  MarkLineComponent, MarkPointComponent, TitleComponent, CanvasRenderer]);

const live = new Set();

// Mount a chart into el (sized by CSS); returns the instance.
export function chart(el, option) {
  for (const c of live) if (!document.body.contains(c.getDom())) { c.dispose(); live.delete(c); }
  const c = echarts.init(el, null, { renderer: 'canvas' });
  c.setOption(Object.assign({ animation: false, textStyle: { fontFamily: 'system-ui, sans-serif' } }, option));
  live.add(c);
  return c;
}

window.addEventListener('resize', () => { for (const c of live) c.resize(); });

export const PALETTE = ['#3b6fb6', '#e07b39', '#4f9d69', '#c4534f', '#8e6bb8', '#8c6d4f', '#d17fb5',
  '#7f7f7f', '#b5b23a', '#3aaab5'];

export function valueAxis(name) {
  return {
    type: 'value', name, nameLocation: 'end', nameTextStyle: { align: 'left' },
    axisLabel: { formatter: (v) => shortNumber(v) }, splitLine: { lineStyle: { color: '#eee' } },
  };
}

export function categoryAxis(data, name) {
  const long = data.some((d) => String(d).length > 8) || data.length > 12;
  return {
    type: 'category', data, name,
    axisLabel: { interval: 0, rotate: long ? 35 : 0, hideOverlap: true, width: 140, overflow: 'truncate' },
  };
}
