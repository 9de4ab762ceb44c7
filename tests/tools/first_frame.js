#!/usr/bin/env node
// The first frame headless Chromium displays for a video URL, as raw RGBA pixels.
//   node first_frame.js URL OUT.rgba [--timeout 60]
// Loads the URL into a <video> (no play), waits for 'loadeddata' (the frame at currentTime 0 is
// ready), draws it on a canvas at the video's size and writes its pixels to OUT.rgba. Prints
// one JSON line {width, height, currentTime}; exit 0 when a frame was drawn.
const { chromium } = require('playwright-core');
const fs = require('fs'), os = require('os'), path = require('path');

const [url, out] = process.argv.slice(2);
const ti = process.argv.indexOf('--timeout');
const timeoutS = ti >= 0 ? parseFloat(process.argv[ti + 1]) : 60;
if (!url || !out) { console.error('usage: first_frame.js URL OUT.rgba [--timeout S]'); process.exit(2); }

(async () => {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'chromium-'));
  const ctx = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = await ctx.newPage();
  // The page on the video's origin, so that its pixels may be read back (no tainted canvas).
  await page.goto(new URL(url).origin + '/healthz');
  await page.setContent('<video id="v" muted playsinline preload="auto"></video><canvas id="c"></canvas>');
  const res = await page.evaluate(async ({ url, timeoutS }) => {
    const v = document.getElementById('v');
    await new Promise((ok, fail) => {
      const t = setTimeout(() => fail(new Error('timeout waiting for loadeddata')), timeoutS * 1000);
      v.addEventListener('loadeddata', () => { clearTimeout(t); ok(); }, { once: true });
      v.addEventListener('error', () => { clearTimeout(t); fail(new Error('media error ' + (v.error && v.error.code))); }, { once: true });
      v.src = url;
    });
    // One more frame callback, so that the decoded frame is the one composited.
    if (v.requestVideoFrameCallback) await new Promise((ok) => { v.requestVideoFrameCallback(() => ok()); setTimeout(ok, 1000); });
    const c = document.getElementById('c');
    c.width = v.videoWidth; c.height = v.videoHeight;
    const g = c.getContext('2d');
    g.drawImage(v, 0, 0);
    const px = g.getImageData(0, 0, c.width, c.height).data;
    let bin = '';
    for (let i = 0; i < px.length; i += 0x8000) bin += String.fromCharCode.apply(null, px.subarray(i, i + 0x8000));
    return { width: c.width, height: c.height, currentTime: v.currentTime, rgba: btoa(bin) };
  }, { url, timeoutS });
  fs.writeFileSync(out, Buffer.from(res.rgba, 'base64'));
  delete res.rgba;
  console.log(JSON.stringify(res));
  await ctx.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
})().catch((e) => { console.error(String(e.stack || e)); process.exit(1); });
