// Draws the app icon (a QR-like mark on a blue square) as SVG and PNG into public/icons.
// Run once when the icon changes: node ionic-app/scripts/make-icons.mjs
import { mkdirSync, writeFileSync } from 'node:fs';
import { deflateSync } from 'node:zlib';

const out = new URL('../public/icons/', import.meta.url);
mkdirSync(out, { recursive: true });

// 11x11 modules: three finder patterns and a few data modules.
const N = 11;
const on = new Set();
// A finder pattern: a 4×4 ring with a 2×2 centre (QR's 7×7 pattern, simplified to fit 11×11).
const finder = (x0, y0) => {
  for (let y = 0; y < 4; y++) for (let x = 0; x < 4; x++) if (x === 0 || y === 0 || x === 3 || y === 3 || (x > 0 && x < 3 && y > 0 && y < 3)) on.add(`${x0 + x},${y0 + y}`);
};
finder(0, 0); finder(7, 0); finder(0, 7);
for (const [x, y] of [[5, 0], [5, 2], [6, 4], [4, 5], [5, 5], [8, 5], [10, 5], [5, 7], [7, 7], [9, 8], [6, 9], [8, 10], [10, 10], [5, 10], [10, 7]]) on.add(`${x},${y}`);

const BG = [31, 95, 191];
const FG = [255, 255, 255];

function svg() {
  const cell = 100 / (N + 6);
  const rects = [...on].map((k) => {
    const [x, y] = k.split(',').map(Number);
    return `<rect x="${(3 + x) * cell}" y="${(3 + y) * cell}" width="${cell}" height="${cell}"/>`;
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 100"><rect width="100" height="100" rx="20" fill="rgb(${BG})"/><g fill="#fff" shape-rendering="crispEdges">${rects.join('')}</g></svg>\n`;
}

const crcTable = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}

/** size px; pad = share of the side left as background around the mark (maskable needs more). */
function png(size, pad, rounded) {
  const raw = Buffer.alloc(size * (size * 4 + 1));
  const r = size * 0.2;
  const inner = size * (1 - 2 * pad);
  const cell = inner / N;
  for (let y = 0; y < size; y++) {
    raw[y * (size * 4 + 1)] = 0;
    for (let x = 0; x < size; x++) {
      let alpha = 255;
      if (rounded) {
        const cx = x < r ? r : x > size - r ? size - r : x;
        const cy = y < r ? r : y > size - r ? size - r : y;
        if ((x - cx) ** 2 + (y - cy) ** 2 > r * r) alpha = 0;
      }
      const mx = Math.floor((x - size * pad) / cell);
      const my = Math.floor((y - size * pad) / cell);
      const fg = mx >= 0 && my >= 0 && mx < N && my < N && on.has(`${mx},${my}`);
      const [R, G, B] = fg ? FG : BG;
      const o = y * (size * 4 + 1) + 1 + x * 4;
      raw[o] = R; raw[o + 1] = G; raw[o + 2] = B; raw[o + 3] = alpha;
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0);
  ihdr.writeUInt32BE(size, 4);
  ihdr[8] = 8; ihdr[9] = 6; ihdr[10] = 0; ihdr[11] = 0; ihdr[12] = 0;
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

writeFileSync(new URL('icon.svg', out), svg());
writeFileSync(new URL('icon-192.png', out), png(192, 3 / 17, true));
writeFileSync(new URL('icon-512.png', out), png(512, 3 / 17, true));
writeFileSync(new URL('icon-maskable-512.png', out), png(512, 0.22, false));
console.log('wrote public/icons');
