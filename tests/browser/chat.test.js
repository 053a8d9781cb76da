// A real browser: headless Chromium opens the chat page twice; one page
// sends a message, the other shows it; then one page sends a hundred as
// fast as its form takes them, and both show them in the order sent.
// Started by tests/tests/browser.rs with SIO_URL, CHROMIUM and SCREENSHOT
// set; the screenshot is kept.
"use strict";

const assert = require("node:assert");
const { test } = require("node:test");
const { chromium } = require("playwright-core");

const URL = process.env.SIO_URL || "http://127.0.0.1:3000";

async function withPages(nicknames, body) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  try {
    const pages = [];
    for (const nickname of nicknames) {
      const page = await browser.newPage({ viewport: { width: 900, height: 600 } });
      await page.goto(URL);
      await page.fill("#nickname", nickname);
      await page.click("#login-form button");
      await page.waitForSelector("#login", { state: "hidden", timeout: 10000 });
      pages.push(page);
    }
    await body(pages);
  } finally {
    await browser.close();
  }
}

test("two chat pages talk through the gateway", async () => {
  await withPages(["ada", "bob"], async ([ada, bob]) => {
    await ada.fill("#text", "hello from a real browser");
    await ada.press("#text", "Enter");
    await bob.getByText("hello from a real browser").waitFor({ timeout: 10000 });
    await bob.getByText("ada", { exact: true }).first().waitFor({ timeout: 10000 });
    if (process.env.SCREENSHOT) await bob.screenshot({ path: process.env.SCREENSHOT });
  });
});

test("a hundred messages sent at once are shown in order", async () => {
  await withPages(["cy", "di"], async ([cy, di]) => {
    // Submitted one after another without waiting: each send's ack comes
    // later, as a user typing fast would have it.
    await cy.evaluate(() => {
      for (let i = 0; i < 100; i++) {
        document.getElementById("text").value = "n" + i;
        document.getElementById("send-form").requestSubmit();
      }
    });
    // The lines from cy, in the order the page shows them.
    const lines = () =>
      [...document.querySelectorAll("#log li")]
        .filter((li) => li.querySelector(".from") && li.childNodes[0].textContent === "cy")
        .map((li) => li.childNodes[1].textContent);
    const want = Array.from({ length: 100 }, (_, i) => "n" + i);
    for (const page of [di, cy]) {
      await page.waitForFunction(`(${lines})().includes("n99")`, null, { timeout: 20000 });
      assert.deepStrictEqual(await page.evaluate(lines), want);
    }
    assert.strictEqual(await cy.getByText("not delivered").count(), 0);
  });
});
