#!/usr/bin/env node
// Drives the jitmux web page in headless Chromium as a camera owner would: signs in with a token,
// opens a day of recordings and waits for every thumbnail, plays one recording in the page to the
// end, checks how an H.265 recording is offered, then watches a camera's live broadcast for a few
// seconds. Saves screenshots along the way.
//   node web_ui.js BASE TOKEN --day /CAM/DAY/ --hevc-day /CAM/DAY/ --live CAM --out DIR
//        [--rate 4] [--watch 6] [--timeout 120]
// Prints one JSON line; exits 0 when every step held.
const { chromium } = require('playwright-core');
const fs = require('fs'), os = require('os'), path = require('path');

const [base, token, ...rest] = process.argv.slice(2);
const opt = (k, d) => { const i = rest.indexOf('--' + k); return i >= 0 ? rest[i + 1] : d; };
const day = opt('day'), hevcDay = opt('hevc-day'), liveCam = opt('live'), outDir = opt('out', '.');
const rate = parseFloat(opt('rate', '4')), watchS = parseFloat(opt('watch', '6')), timeoutMs = parseFloat(opt('timeout', '120')) * 1000;

const report = { steps: [] };
function step(name, data) { report.steps.push(Object.assign({ step: name }, data || {})); }
function check(cond, what) { if (!cond) throw new Error('check failed: ' + what); }

(async () => {
  fs.mkdirSync(outDir, { recursive: true });
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'chromium-'));
  const ctx = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true,
    viewport: { width: 1280, height: 900 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
           '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required'],
  });
  ctx.setDefaultTimeout(timeoutMs);
  const page = await ctx.newPage();
  const consoleErrors = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  try {
    // 1. Sign in.
    await page.goto(base + '/');
    await page.fill('input[name="token"]', token);
    await Promise.all([page.waitForURL(base + '/ui/'), page.click('button[type="submit"]')]);
    const cookies = await ctx.cookies(base);
    const session = cookies.find((c) => c.name === 'jitmux_session');
    check(session && session.httpOnly && session.sameSite === 'Strict', 'session cookie is HttpOnly, SameSite=Strict');
    check(!(await page.evaluate(() => document.cookie)).includes('jitmux_session'), 'script cannot read the session');
    step('signed in', { url: page.url(), cookie: { httpOnly: session.httpOnly, sameSite: session.sameSite } });

    // 2. A day of recordings: every thumbnail loads.
    await page.goto(base + '/ui' + day);
    const cards = await page.locator('li.card').count();
    check(cards > 0, 'recordings listed');
    await page.waitForFunction(() => [...document.querySelectorAll('img.thumb')].every((i) => i.complete && i.naturalWidth > 0));
    const thumbs = await page.$$eval('img.thumb', (imgs) => imgs.map((i) => [i.naturalWidth, i.naturalHeight]));
    check(thumbs.length === cards, 'a thumbnail per recording');
    // The download link works with the session alone and gives the whole file.
    const href = await page.locator('li.card a.download').first().getAttribute('href');
    const dl = await page.request.get(base + href);
    const len = parseInt(dl.headers()['content-length'], 10);
    check(dl.status() === 200 && dl.headers()['content-type'] === 'video/mp4' && (await dl.body()).length === len,
      'download link gives the full MP4');
    step('thumbnails', { cards, thumbs, download: { href, status: dl.status(), len } });

    // 3. Play the first recording in the page to the end.
    const ended = page.evaluate((rate) => new Promise((ok, fail) => {
      const v = document.getElementById('video');
      v.addEventListener('playing', () => { v.playbackRate = rate; }, { once: true });
      v.addEventListener('ended', () => ok({ currentTime: v.currentTime, duration: v.duration,
        width: v.videoWidth, frames: v.getVideoPlaybackQuality().totalVideoFrames, src: v.currentSrc }), { once: true });
      v.addEventListener('error', () => fail(new Error('media error ' + (v.error && v.error.message))), { once: true });
    }), rate);
    await page.locator('li.card button.play').first().click();
    await page.waitForFunction(() => document.getElementById('video').currentTime > 0.5);
    await page.screenshot({ path: path.join(outDir, 'recordings.png') });
    const played = await ended;
    check(played.frames > 0 && played.width > 0, 'decoded video frames');
    check(/[?&]sig=/.test(played.src) && /[?&]mode=stream/.test(played.src), 'played through a signed quasi-stream URL');
    step('played to end', played);

    // 4. An H.265 recording: offered for download, with a note, when the browser cannot decode it.
    if (hevcDay) {
      await page.goto(base + '/ui' + hevcDay);
      const h = await page.evaluate(() => {
        const card = document.querySelector('li.card');
        const v = document.getElementById('video');
        const note = card.querySelector('.note');
        return { codecs: card.dataset.codecs, canPlayType: v.canPlayType('video/mp4; codecs="' + card.dataset.codecs + '"'),
          playDisabled: card.querySelector('button.play').disabled, note: note.hidden ? null : note.textContent,
          download: card.querySelector('a.download').getAttribute('href') };
      });
      check(/^hev1|^hvc1/.test(h.codecs), 'H.265 codecs string');
      if (h.canPlayType === '') check(h.playDisabled && /H\.265/.test(h.note), 'undecodable H.265 says so');
      else check(!h.playDisabled, 'decodable H.265 can be played');
      check(h.download.endsWith('.mp4'), 'download link');
      await page.screenshot({ path: path.join(outDir, 'hevc.png') });
      step('hevc', h);
    }

    // 5. Watch a live broadcast for a few seconds.
    if (liveCam) {
      await page.goto(base + '/ui/' + liveCam + '/');
      const live = page.locator('li.card[data-live="true"] button.play');
      await live.waitFor();
      await live.click();
      await page.waitForFunction(() => { const v = document.getElementById('video'); return v.currentTime > 0 && !v.paused; });
      const t0 = await page.evaluate(() => document.getElementById('video').currentTime);
      await page.waitForTimeout(watchS * 1000);
      const w = await page.evaluate(() => { const v = document.getElementById('video');
        return { currentTime: v.currentTime, paused: v.paused, ended: v.ended, width: v.videoWidth, src: v.currentSrc,
          title: document.getElementById('now').textContent, frames: v.getVideoPlaybackQuality().totalVideoFrames }; });
      await page.screenshot({ path: path.join(outDir, 'live.png') });
      const advanced = w.currentTime - t0;
      check(advanced > watchS * 0.6, `live playback advanced ${advanced.toFixed(2)} s in ${watchS} s`);
      check(/live\.mp4\?/.test(w.src), 'live tail URL');
      step('watched live', Object.assign({ startTime: t0, advancedS: advanced }, w));
    }
    report.ok = true;
  } catch (e) {
    report.ok = false;
    report.error = String(e.message || e);
    try { await page.screenshot({ path: path.join(outDir, 'failure.png') }); } catch (_) {}
  }
  report.consoleErrors = consoleErrors;
  await ctx.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
  console.log(JSON.stringify(report));
  process.exit(report.ok ? 0 : 1);
})();
