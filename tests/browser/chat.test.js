// A real browser: headless Chromium opens the chat page twice; one page
// sends a message, the other shows it. Started by tests/tests/browser.rs
// with SIO_URL, CHROMIUM and SCREENSHOT set; the screenshot is kept.
"use strict";

const { test } = require("node:test");
const { chromium } = require("playwright-core");

const URL = process.env.SIO_URL || "http://127.0.0.1:3000";

test("two chat pages talk through the gateway", async () => {
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
    for (const nickname of ["ada", "bob"]) {
      const page = await browser.newPage({ viewport: { width: 900, height: 600 } });
      await page.goto(URL);
      await page.fill("#nickname", nickname);
      await page.click("#login-form button");
      await page.waitForSelector("#login", { state: "hidden", timeout: 10000 });
      pages.push(page);
    }
    const [ada, bob] = pages;
    await ada.fill("#text", "hello from a real browser");
    await ada.press("#text", "Enter");
    await bob.getByText("hello from a real browser").waitFor({ timeout: 10000 });
    await bob.getByText("ada", { exact: true }).first().waitFor({ timeout: 10000 });
    if (process.env.SCREENSHOT) await bob.screenshot({ path: process.env.SCREENSHOT });
  } finally {
    await browser.close();
  }
});
