#!/usr/bin/env node
// Headless Chromium playback check for a progressive MP4 / fMP4 URL (exercises Chrome's media
// stack incl. its HTTP Range requests on seek).
//   node browser_play.js URL [--rate 8] [--seek 0.5] [--timeout 120] [--allow-no-video]
// Prints one JSON line; exit 0 when metadata loaded, video decoded (videoWidth > 0, unless
// --allow-no-video), the seek landed and playback reached 'ended'.
// NB: Debian's chromium plays H.264/AAC but NOT H.265: an HEVC+AAC file 'plays' audio-only
// (videoWidth 0, 0 decoded frames, no error); HEVC-only fails with MEDIA_ERR_SRC_NOT_SUPPORTED.
const { chromium } = require('playwright-core');
const fs = require('fs'), os = require('os'), path = require('path');

const args = process.argv.slice(2);
const url = args[0];
const opt = (k, d) => { const i = args.indexOf('--' + k); return i >= 0 ? parseFloat(args[i + 1]) : d; };
const rate = opt('rate', 8), seekFrac = opt('seek', 0.5), timeoutS = opt('timeout', 120);
// --header "Name: value" (repeatable): sent with every request of the page, media included.
const extraHTTPHeaders = {};
args.forEach((a, i) => { if (a === '--header') { const [k, ...v] = args[i + 1].split(':'); extraHTTPHeaders[k.trim()] = v.join(':').trim(); } });
if (!url) { console.error('usage: browser_play.js URL [--rate N] [--seek F] [--timeout S]'); process.exit(2); }

(async () => {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'chromium-'));
  const ctx = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    extraHTTPHeaders,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync',
           '--autoplay-policy=no-user-gesture-required'],
  });
  const page = await ctx.newPage();
  const ranges = [];
  page.on('request', r => { if (r.url() === url) ranges.push(r.headers()['range'] || '(none)'); });
  await page.setContent('<video id="v" muted playsinline preload="auto"></video>');
  const res = await page.evaluate(async ({ url, rate, seekFrac, timeoutS }) => {
    const v = document.getElementById('v');
    const ev = (name) => new Promise((ok, fail) => {
      const t = setTimeout(() => fail(new Error('timeout waiting for ' + name)), timeoutS * 1000);
      v.addEventListener(name, () => { clearTimeout(t); ok(); }, { once: true });
      v.addEventListener('error', () => { clearTimeout(t); fail(new Error('media error ' + (v.error && v.error.code) + ' ' + (v.error && v.error.message))); }, { once: true });
    });
    const out = { url };
    try {
      v.src = url;
      await ev('loadedmetadata');
      Object.assign(out, { duration: v.duration, videoWidth: v.videoWidth, videoHeight: v.videoHeight });
      const target = v.duration * seekFrac;
      const seeked = ev('seeked');
      v.currentTime = target;
      await seeked;
      out.seekTarget = target; out.seekLanded = v.currentTime;
      v.playbackRate = rate;
      const ended = ev('ended');
      await v.play();
      await ended;
      out.ended = true;
    } catch (e) { out.error = String(e.message || e); }
    out.currentTime = v.currentTime;
    const q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : null;
    if (q) { out.decodedFrames = q.totalVideoFrames; out.droppedFrames = q.droppedVideoFrames; }
    out.mediaError = v.error ? { code: v.error.code, message: v.error.message } : null;
    return out;
  }, { url, rate, seekFrac, timeoutS });
  res.rangeHeaders = ranges.slice(0, 10);
  res.ok = !!(res.ended && !res.error && Math.abs(res.seekLanded - res.seekTarget) < 0.5 &&
              (args.includes('--allow-no-video') || res.videoWidth > 0));
  console.log(JSON.stringify(res));
  await ctx.close();
  process.exit(res.ok ? 0 : 1);
})().catch(e => { console.error(e); process.exit(2); });
