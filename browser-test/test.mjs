// The browser client in a real headless Chromium (Debian's), driven by playwright-core.
//
// Needs CHAT_URL (the page, http://127.0.0.1:PORT/) of a running chat_server; run.sh starts
// one. With CHAT_SERVER_BIN and CHAT_SERVER_PID also set, it restarts that server on the same
// port to see the page reconnect by itself (writing the new server's pid to
// CHAT_SERVER_PIDFILE, so run.sh can stop it whatever happens here).
//
// Two pages log in, talk, DM, try an HTML injection, load history by scrolling, and live
// through a server restart; the two pages side by side are saved as docs/two-tabs.png.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, statSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const CHAT_URL = process.env.CHAT_URL;
if (!CHAT_URL || !/^http:\/\/127\.0\.0\.1:\d+\/$/.test(CHAT_URL)) {
  throw new Error(`CHAT_URL must be http://127.0.0.1:PORT/ (got ${CHAT_URL})`);
}
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SCREENSHOT = join(ROOT, 'docs', 'two-tabs.png');
const PATIENCE = 10_000; // ms any single expectation may take
const VIEWPORT = { width: 560, height: 400 };

let context;
let profile;
let alice;
let bob;
let restarted = null; // a server this test started
const pageErrors = [];

before(async () => {
  profile = mkdtempSync(join(tmpdir(), 'chat-browser-test-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    viewport: VIEWPORT,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  context.setDefaultTimeout(PATIENCE);
  alice = context.pages()[0] || (await context.newPage());
  bob = await context.newPage();
  for (const page of [alice, bob]) page.on('pageerror', (error) => pageErrors.push(String(error)));
});

after(async () => {
  if (context) await context.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
  if (restarted) {
    restarted.kill('SIGTERM');
    await new Promise((resolve) => {
      if (restarted.exitCode !== null) resolve();
      else restarted.once('exit', resolve);
    });
  }
});

// The conversation a page shows.
const shown = (page) => page.locator('#views ol.messages:not([hidden])');
const status = (page) => page.locator('#status');

async function login(page, name) {
  await page.goto(CHAT_URL);
  await page.fill('#name', name);
  await page.click('#login-form button[type=submit]');
  await page.locator('#status[data-state="online"]').waitFor();
  assert.equal(await page.textContent('#me'), name);
}

async function say(page, text) {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
}

async function openRoom(page, room) {
  await page.click(`#rooms button[data-room="${room}"]`);
  await page.locator('#conv-title', { hasText: `#${room}` }).waitFor();
}

test('the page is served on the WebSocket port and two pages log in', async () => {
  await login(alice, 'alice');
  await login(bob, 'bob');
  assert.equal(await alice.locator('#conv-title').textContent(), '#general');
});

test('the room list shows member counts', async () => {
  const general = alice.locator('#rooms button[data-room="general"] .count');
  await general.filter({ hasText: /^2$/ }).waitFor();
  await alice.click('#refresh-rooms');
  assert.equal(await general.textContent(), '2');
});

test('presence: alice sees bob join', async () => {
  await shown(alice).locator('li.presence', { hasText: 'bob joined #general' }).waitFor();
});

test('one page says something and the other shows it, own messages on the right', async () => {
  await say(alice, 'hello from alice');
  const onBob = shown(bob).locator('li.msg.other', { hasText: 'hello from alice' });
  await onBob.waitFor();
  assert.equal(await onBob.locator('.from').textContent(), 'alice');
  const onAlice = shown(alice).locator('li.msg.own', { hasText: 'hello from alice' });
  await onAlice.waitFor();
  await say(bob, 'hi alice');
  const reply = shown(alice).locator('li.msg.other', { hasText: 'hi alice' });
  await reply.waitFor();
  const mine = await onAlice.boundingBox();
  const theirs = await reply.boundingBox();
  const list = await shown(alice).boundingBox();
  assert.ok(mine.x + mine.width > list.x + list.width - 40, 'own message on the right');
  assert.ok(theirs.x < list.x + 40, "others' message on the left");
});

test('a direct message reaches only its recipient', async () => {
  await alice.click('#members button.member:not(.me)');
  assert.equal(await alice.inputValue('#dm-to'), 'bob');
  await say(alice, 'a secret for bob');
  await shown(alice).locator('li.msg.own', { hasText: 'a secret for bob' }).waitFor();
  assert.equal(
    await shown(alice).locator('li.msg.own .from').last().textContent(),
    'to bob',
  );
  await bob.locator('#open-dms .badge', { hasText: '1' }).waitFor();
  await bob.click('#open-dms');
  const dm = shown(bob).locator('li.msg.other', { hasText: 'a secret for bob' });
  await dm.waitFor();
  assert.equal(await dm.locator('.from').textContent(), 'alice');
  assert.equal(await bob.inputValue('#dm-to'), 'alice', 'a reply goes back to the sender');
});

test('an HTML injection attempt is shown as text', async () => {
  const attack = '<img src=x onerror="window.__pwned=1;document.title=\'pwned\'"><b>bold?</b>';
  await openRoom(alice, 'general');
  await openRoom(bob, 'general');
  await say(alice, attack);
  const onBob = shown(bob).locator('li.msg.other .text').filter({ hasText: 'onerror' });
  await onBob.waitFor();
  assert.equal(await onBob.textContent(), attack, 'the exact text, as text');
  for (const page of [alice, bob]) {
    assert.equal(await page.locator('#views img, #views b').count(), 0, 'no element was made');
    assert.equal(await page.evaluate(() => window.__pwned), undefined, 'no script ran');
    assert.notEqual(await page.title(), 'pwned');
  }
});

test('a screenshot of the two pages side by side', async () => {
  await say(bob, 'see, it is only text');
  await shown(alice).locator('li.msg', { hasText: 'see, it is only text' }).waitFor();
  const shots = [];
  for (const page of [alice, bob]) shots.push((await page.screenshot()).toString('base64'));
  const frame = await context.newPage();
  await frame.setViewportSize({ width: VIEWPORT.width * 2 + 12, height: VIEWPORT.height + 8 });
  await frame.setContent(
    '<body style="margin:0;padding:4px;display:flex;gap:4px;background:#5b6573">' +
      shots.map((s) => `<img alt="" src="data:image/png;base64,${s}">`).join('') +
      '</body>',
  );
  await frame.waitForFunction(() => [...document.images].every((i) => i.complete));
  mkdirSync(dirname(SCREENSHOT), { recursive: true });
  writeFileSync(SCREENSHOT, await frame.screenshot());
  await frame.close();
  const size = statSync(SCREENSHOT).size;
  assert.ok(size < 200_000, `the screenshot is small (${size} bytes)`);
  console.log(`# screenshot: ${SCREENSHOT} (${size} bytes)`);
});

test('history loads on join and on scrolling up', async () => {
  await alice.fill('#join-room', 'history');
  await alice.press('#join-room', 'Enter');
  await alice.locator('#conv-title', { hasText: '#history' }).waitFor();
  const lines = Array.from({ length: 70 }, (_, i) => `line ${i + 1}`);
  for (const line of lines) await say(alice, line);
  await shown(alice).locator('li.msg.own .text', { hasText: /^line 70$/ }).waitFor();

  await bob.fill('#join-room', 'history');
  await bob.press('#join-room', 'Enter');
  await bob.locator('#conv-title', { hasText: '#history' }).waitFor();
  const list = shown(bob);
  // The join's last messages, then older pages until the list can scroll.
  await list.locator('li.msg .text', { hasText: /^line 70$/ }).waitFor();
  await bob.waitForFunction(() => {
    const ol = document.querySelector('#views ol.messages:not([hidden])');
    return ol.querySelectorAll('li.msg').length > 5 && ol.scrollHeight > ol.clientHeight;
  });
  assert.equal(await list.locator('li.start').count(), 0, 'not at the start yet');
  // Scrolling up loads the rest.
  await list.evaluate((ol) => {
    ol.scrollTop = 0;
    ol.dispatchEvent(new Event('scroll'));
  });
  await list.locator('li.start', { hasText: 'the beginning of #history' }).waitFor();
  const texts = await list.locator('li.msg .text').allTextContents();
  assert.deepEqual(texts, lines, 'every message once, oldest first');
});

test('a lost connection is shown, and the page reconnects by itself', async (t) => {
  const { CHAT_SERVER_BIN: bin, CHAT_SERVER_PID: pid } = process.env;
  if (!bin || !pid) {
    t.skip('CHAT_SERVER_BIN and CHAT_SERVER_PID are not set');
    return;
  }
  const port = new URL(CHAT_URL).port;
  process.kill(Number(pid), 'SIGTERM');
  for (const page of [alice, bob]) {
    await page.locator('#status[data-state="reconnecting"]').waitFor();
    assert.match(await status(page).textContent(), /reconnecting in \d+ s/);
    await shown(page).locator('li.error', { hasText: 'the server is shutting down' }).waitFor();
  }
  restarted = spawn(bin, ['--memory', '--ws', `127.0.0.1:${port}`, '--tcp', 'off'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  if (process.env.CHAT_SERVER_PIDFILE) {
    writeFileSync(process.env.CHAT_SERVER_PIDFILE, String(restarted.pid));
  }
  const listening = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the server did not start')), PATIENCE);
    createInterface({ input: restarted.stdout }).on('line', (line) => {
      if (line.startsWith('listening ws://')) {
        clearTimeout(timer);
        resolve(line);
      }
    });
    restarted.once('exit', (code) => reject(new Error(`the server exited (${code})`)));
  });
  assert.equal(listening, `listening ws://127.0.0.1:${port}/chat`);
  // The back-off is at most 10 s; the pages come back by themselves, or on a click.
  for (const page of [alice, bob]) {
    await page.locator('#status[data-state="online"]').waitFor({ timeout: 15_000 });
    await shown(page).locator('li.info', { hasText: 'reconnected' }).waitFor();
  }
  // Both are back in #history, and talk again.
  await bob.locator('#rooms button[data-room="history"] .count', { hasText: /^2$/ }).waitFor();
  await say(alice, 'after the restart');
  await shown(bob).locator('li.msg.other', { hasText: 'after the restart' }).waitFor();
});

test('no script errors on either page', () => {
  assert.deepEqual(pageErrors, []);
});
