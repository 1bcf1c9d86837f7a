#!/usr/bin/env python3
"""The dashboard in a real browser (issue 14, item 7): headless Chromium, driven by Selenium,
against tests/browser/dashboard_tour.cpp running. Each view of the page must show what the
program made (processes, actors, calls, objects, configuration, logs, the timeline); the
logs follow live;
the kill button (after the page's confirm()) kills the actor "tally", whose next call then
fails with ray::actor_died in the program. A screenshot of each view, at 1280x800 and one at
phone size, is kept in --out (the path is printed).

Usage: test_dashboard_browser.py --program PATH [--out DIR] [--docs-screenshot FILE]
Every wait is a WebDriverWait on a condition with a bounded timeout; a failure says what was
missing and what the page showed instead.
"""
import argparse
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time

from selenium import webdriver
from selenium.common.exceptions import (NoSuchElementException, StaleElementReferenceException,
                                        TimeoutException, WebDriverException)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

WAIT_S = 15  # the page refreshes every second; this is many refreshes


class Failure(Exception):
    pass


class Program:
    """dashboard_tour, its stdout and stderr read on threads (lines into queues)."""

    def __init__(self, path):
        self.proc = subprocess.Popen([path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        self.out = queue.Queue()
        self.err = queue.Queue()
        self.seen = []  # everything it wrote, for the failure message
        for stream, q in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._read, args=(stream, q), daemon=True).start()

    def _read(self, stream, q):
        for line in stream:
            self.seen.append(line.rstrip("\n"))
            q.put(line.rstrip("\n"))
        q.put(None)

    def expect(self, q, pattern, what, timeout=WAIT_S):
        """The first line of `q` matching `pattern` within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = q.get(timeout=max(left, 0.01))
            except queue.Empty:
                line = ""
            if line is None:
                raise Failure(f"the program ended (status {self.proc.wait()}) before {what}")
            m = re.search(pattern, line) if line else None
            if m:
                return m
            if left <= 0:
                raise Failure(f"no {what} within {timeout} s")

    def send(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def finish(self, timeout=WAIT_S):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def browser(chromium, chromedriver):
    options = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1280,800", "--hide-scrollbars", "--no-first-run",
              "--disable-extensions", "--disable-background-networking"):
        options.add_argument(a)
    options.binary_location = chromium
    # The driver named, so that Selenium never looks for one on the network.
    return webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)


class Page:
    def __init__(self, driver, out):
        self.d = driver
        self.out = out
        self.shots = []

    def wait(self, condition, what, timeout=WAIT_S):
        """Waits until `condition(driver)` is truthy; on timeout says what and shows the page."""
        try:
            return WebDriverWait(self.d, timeout, poll_frequency=0.1).until(condition)
        except TimeoutException:
            shown = self.d.find_element(By.TAG_NAME, "body").text
            error = self.d.find_element(By.ID, "err").text
            raise Failure(f"{what}: not shown within {timeout} s. The page showed:\n"
                          f"{shown[:3000]}\n(error line: {error!r})") from None

    def show(self, view):
        self.d.find_element(By.XPATH, f"//nav/button[text()='{view}']").click()
        self.wait(lambda d: d.find_element(By.XPATH, f"//nav/button[text()='{view}']")
                  .get_attribute("class") == "on", f"the {view} tab selected")

    def rows(self):
        """The rows of the view's tables, each a list of its cells' text: read in one script,
        since the page replaces its tables at each refresh."""
        return self.d.execute_script(
            "return [...document.querySelectorAll('#view tbody tr')]"
            ".map(tr => [...tr.cells].map(td => td.innerText.trim()))")

    def text(self, css):
        """The text of the element `css` selects, '' when there is none."""
        return self.d.execute_script(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : ''", css)

    def rows_where(self, test):
        """A condition: the view's rows, when `test(rows)` holds on them."""
        def condition(_):
            r = self.rows()
            return r if test(r) else False
        return condition

    def screenshot(self, name):
        path = os.path.join(self.out, f"dashboard-{name}.png")
        self.d.save_screenshot(path)
        self.shots.append(path)
        return path


DESKTOP = {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False}
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}


def tour(page, program, url):
    d = page.d
    # The viewport itself 1280x800 (--window-size counts the window's frame too).
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", DESKTOP)
    d.get(url)
    page.wait(expected_conditions.title_is("coray dashboard"), "the page's title")
    tabs = [b.text for b in d.find_elements(By.CSS_SELECTOR, "nav button")]
    expected_tabs = ["machine", "actors", "tasks", "memory", "configuration", "logs", "timeline"]
    if tabs != expected_tabs:
        raise Failure(f"the tabs are {tabs}, not {expected_tabs}")

    # machine: the driver, its two task workers and the two actors, with CPU and memory.
    page.show("machine")
    rows = page.wait(page.rows_where(lambda r: len(r) >= 5 and
                                     sum(1 for x in r if "actor" in x) >= 2),
                     "five processes (driver, 2 workers, 2 actors)")
    roles = sorted(x[1] for x in rows)
    if roles.count("driver") != 1 or roles.count("actor") != 2:
        raise Failure(f"the machine view lists roles {roles}: wanted one driver and two actors")
    if str(program.proc.pid) not in [x[0] for x in rows]:
        raise Failure(f"the driver's pid {program.proc.pid} is not in the machine view: {rows}")
    host = page.text("#view p")
    if "store" not in host or "CPU" not in host:
        raise Failure(f"the machine view's summary lacks the store or the CPUs: {host!r}")
    page.screenshot("machine")

    # actors: "tally" and "greeter" alive, each with a kill button.
    page.show("actors")
    rows = page.wait(page.rows_where(lambda r: {"tally", "greeter"} <= {x[2] for x in r}
                                     and all(x[3] == "ALIVE" for x in r)),
                     "the actors tally and greeter, ALIVE")
    tally = next(x for x in rows if x[2] == "tally")
    if tally[1] != "tour::counter" or int(tally[6]) < 4:  # its construction and three calls
        raise Failure(f"tally's row is {tally}: wanted class tour::counter and 4 calls done")
    if len(d.find_elements(By.CSS_SELECTOR, "#view button.kill")) != 2:
        raise Failure("the actors view does not show a kill button for each of the two actors")
    page.screenshot("actors")

    # tasks: the summary by function and the list of calls.
    page.show("tasks")
    page.wait(page.rows_where(lambda r: any(x[0] == "tour::square" and "FINISHED: 5" in x[1]
                                            for x in r if len(x) == 2)),
              "the summary row tour::square with FINISHED: 5")
    page.wait(page.rows_where(lambda r: any(len(x) > 2 and x[1] == "tour::say" for x in r)),
              "a call of tour::say in the list of calls")
    page.screenshot("tasks")

    # memory: the 2 MiB vector put into the store.
    page.show("memory")
    page.wait(page.rows_where(lambda r: any(len(x) > 2 and x[1] == "2.0 MiB" and x[2] == "STORE"
                                            for x in r)),
              "the 2.0 MiB object in the STORE")
    page.screenshot("memory")

    # configuration: the options the program set.
    page.show("configuration")
    rows = page.wait(page.rows_where(lambda r: ["num_workers", "2"] in r),
                     "the option num_workers = 2")
    options = {x[0]: x[1] for x in rows if len(x) == 2}
    for key, value in (("dashboard_port", "0"), ("dashboard_host", '"127.0.0.1"')):
        if options.get(key) != value:
            raise Failure(f"the configuration view has {key} = {options.get(key)!r}, not {value}")
    page.screenshot("configuration")

    # timeline: a call made now is drawn on its worker's track; the whole is a download.
    program.send("say timeline")
    page.show("timeline")
    page.wait(lambda dd: len(dd.find_elements(By.CSS_SELECTOR, "main .track .slice")) > 0,
              "a call's slice on a track of the timeline view")
    link = d.find_element(By.CSS_SELECTOR, "main a[download]")
    if "/api/timeline/trace" not in (link.get_attribute("href") or ""):
        raise Failure(f"the timeline's download link is {link.get_attribute('href')!r}")
    page.screenshot("timeline")

    # logs: what a worker printed, then a line printed after the page opened, live.
    page.show("logs")
    log = lambda _: page.text("#log")
    page.wait(lambda dd: re.search(r"\([^)]*pid=\d+\) tour says hello", log(dd)),
              "the worker's line '(say pid=N) tour says hello' in the logs")
    program.send("say live-line")
    page.wait(lambda dd: "tour says live-line" in log(dd),
              "the line 'tour says live-line', printed after the page opened, in the logs")
    if d.find_element(By.CSS_SELECTOR, "nav button.on").text != "logs":
        raise Failure("the logs view was left while it followed")
    page.screenshot("logs")

    # kill: the button of tally, confirm() accepted; the row turns DEAD and the program's
    # next call of tally fails with actor_died.
    page.show("actors")
    page.wait(page.rows_where(lambda r: any(len(x) > 2 and x[2] == "tally" for x in r)),
              "tally's row")
    def click_kill(_):  # the row may be replaced by a refresh between finding and clicking
        try:
            d.find_element(By.XPATH,
                           "//main//tr[td[3][text()='tally']]//button[@class='kill']").click()
            return True
        except (StaleElementReferenceException, NoSuchElementException):
            return False
    page.wait(click_kill, "tally's kill button, clicked")
    alert = page.wait(expected_conditions.alert_is_present(), "the confirm() of the kill button")
    if "Kill actor" not in alert.text:
        raise Failure(f"the kill button's confirm says {alert.text!r}")
    alert.accept()
    rows = page.wait(page.rows_where(lambda r: any(len(x) > 3 and x[2] == "tally" and
                                                   x[3] == "DEAD" for x in r)),
                     "tally DEAD after the kill button")
    if not any(x[2] == "greeter" and x[3] == "ALIVE" for x in rows):
        raise Failure(f"the kill of tally touched greeter: {rows}")
    if page.text("#err"):
        raise Failure(f"the page shows an error after the kill: {page.text('#err')!r}")
    page.screenshot("actors-after-kill")
    program.send("check")
    m = program.expect(program.out, r"^tour: tally (died|alive): (.*)$",
                       "the program's check of tally")
    if m.group(1) != "died" or m.group(2) != "actor_died":
        raise Failure(f"tally's next call after the kill button: {m.group(0)!r}, not actor_died")

    # phone size: the page fits the width (its tables scroll inside <main>), tabs reachable.
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
    page.show("machine")
    page.wait(page.rows_where(lambda r: len(r) >= 4),  # tally is gone
              "the machine view at phone size: driver, 2 workers, greeter")
    overflow = d.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
    if overflow > 0:
        raise Failure(f"at 390 px wide the page is {overflow} px wider than the screen")
    for b in d.find_elements(By.CSS_SELECTOR, "nav button"):
        if not b.is_displayed():
            raise Failure(f"at phone size the tab {b.text!r} is not shown")
    page.screenshot("phone-machine")
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", DESKTOP)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--program", required=True, help="dashboard_tour")
    ap.add_argument("--out", default="dashboard-screenshots", help="where screenshots go")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    ap.add_argument("--chromedriver",
                    default=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    ap.add_argument("--docs-screenshot",
                    help="also copy the machine view's screenshot here (docs/dashboard.png)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    out = os.path.abspath(args.out)

    started = time.monotonic()
    program = Program(args.program)
    driver = None
    status = 1
    try:
        url = program.expect(program.err, r"coray: View the dashboard at (\S+)",
                             "'coray: View the dashboard at URL' on stderr").group(1)
        program.expect(program.out, r"^tour: ready$", "'tour: ready' on stdout")
        driver = browser(args.chromium, args.chromedriver)
        page = Page(driver, out)
        try:
            tour(page, program, url)
        finally:
            for path in page.shots:
                print(f"screenshot: {path}")
        if args.docs_screenshot:
            shutil.copyfile(os.path.join(out, "dashboard-machine.png"), args.docs_screenshot)
            print(f"screenshot for the docs: {args.docs_screenshot}")
        program.send("quit")
        code = program.finish()
        if code != 0:
            raise Failure(f"dashboard_tour exited with status {code}, not 0")
        status = 0
        print(f"passed: every view, the live logs and the kill button, in "
              f"{time.monotonic() - started:.1f} s")
    except (Failure, WebDriverException) as e:
        print(f"FAILED: {e}", file=sys.stderr)
        print("the program wrote:\n  " + "\n  ".join(program.seen[-40:]), file=sys.stderr)
    finally:
        if driver is not None:
            driver.quit()
        if program.proc.poll() is None:
            program.finish(timeout=5)
    return status


if __name__ == "__main__":
    sys.exit(main())
