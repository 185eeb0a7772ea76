/**
 * A few lines of DOM building for the start screen and the scanner (start.ts, scan-panel.ts,
 * scanner-view.ts), which run before React and Ionic have loaded. Text goes in as text nodes
 * only: nothing here ever parses markup from data.
 */
import { alertCircle, camera, close, flashlight, flashlightOutline } from 'ionicons/icons';

type Attrs = Record<string, string | number | boolean | undefined>;

export function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Array<Node | string>): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    if (name === 'className') node.className = String(value);
    else if (name === 'tabIndex') node.tabIndex = Number(value);
    else if (name === 'hidden') node.hidden = true;
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  node.append(...children);
  return node;
}

export const ICON_CLOSE = close;
export const ICON_CAMERA = camera;
export const ICON_ERROR = alertCircle;
export const ICON_TORCH = flashlight;
export const ICON_TORCH_OFF = flashlightOutline;

/** An ionicons icon (a data: URL of our own bundle, never data from outside) as inline SVG in the text colour. */
export function icon(dataUrl: string, className = 'q-icon'): SVGElement {
  const svg = new DOMParser().parseFromString(decodeURIComponent(dataUrl.slice(dataUrl.indexOf(',') + 1)), 'image/svg+xml').documentElement;
  svg.setAttribute('class', className);
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  return document.importNode(svg, true) as unknown as SVGElement;
}
