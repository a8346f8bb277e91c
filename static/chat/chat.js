// chatsite page behaviour: the composer keys, autoscroll that respects the reader, and a
// polite announcement when a reply finishes. htmx and its WebSocket extension do the rest.
(function () {
  "use strict";

  // A frame can outrun the HTTP response that adds its reply to the page. Such fragments have
  // no target yet: drop them (and only them); the reply's element asks the socket for a
  // snapshot (`resync`) as soon as it is on the page.
  // New messages reach a tab twice when it sent them (its own HTTP response, and the socket
  // event that tells every tab): whichever comes second is dropped. Two paths on purpose: the
  // response shows the sender's turn even while its socket is reconnecting (the moment a
  // user is most likely to resend), and the socket is the only way other tabs learn of it.
  // Replies whose frames came before them (by id): see `htmx:load` below.
  var framesLost = {};
  htmx.defineExtension("chat-frames", {
    transformResponse: function (text, xhr, elt) {
      var template = document.createElement("template");
      template.innerHTML = text;
      var dropped = false;
      function drop(element) { element.remove(); dropped = true; }
      function shown(element) { return element.id && document.getElementById(element.id); }
      function streaming(article) { return /\bstatus-(pending|streaming)\b/.test(article.className); }
      // A path drawn anew (Regenerate, an edit or a version switch in another tab): what the
      // tab shows after the fork goes, then the new path's messages come. A tab that does not
      // show the path up to the fork (it missed a change while its socket was down) would mix
      // two branches: it loads the page again instead (what is typed in the box is kept), so
      // that its socket, too, starts from what the page shows. New messages (a turn, a tool
      // round) name the message they follow, and a tab whose last message is another loads
      // again too. A tab with text typed that a reload would lose (an edit under way, a reply's
      // comment, a new title in the open menu) keeps its page as it is, the text with it (its
      // next message is refused, with the page redrawn and the message kept, if the
      // conversation moved on meanwhile).
      function shownIds() {
        return Array.prototype.map.call(
          document.querySelectorAll("#messages > article[id^='m']"),
          function (article) { return article.id.slice(1); });
      }
      function typedHere() {
        var boxes = document.querySelectorAll(
          "#messages article.editing textarea, #messages input[name='comment']");
        var title = document.querySelector("details[open] #rename-title");
        var heading = document.getElementById("conversation-title");
        return Array.prototype.some.call(boxes, function (box) {
          return box.value !== box.defaultValue;
        }) || Boolean(title && heading && title.value.trim() !== heading.textContent.trim());
      }
      function stale(element) {
        drop(element);
        if (!typedHere()) { location.reload(); }
      }
      var path = Array.prototype.filter.call(template.content.children, function (element) {
        return element.hasAttribute("data-path");
      });
      if (path.length) {
        var upto = path[0].getAttribute("data-path");
        var count = upto ? upto.split(",").length : 0;
        if (typedHere()) {
          path.forEach(drop);
        } else if (shownIds().slice(0, count).join(",") !== upto) {
          path.forEach(drop);
          location.reload();
        }
      }
      Array.prototype.slice.call(template.content.children).forEach(function (element) {
        var swap = element.getAttribute("hx-swap-oob");
        if (element.hasAttribute("data-path")) {
          return;  // applied as it is (above)
        } else if (swap && swap.indexOf(":") < 0 && element.id && !shown(element)) {
          drop(element);  // a fragment whose target is not on the page yet
          var reply = /^[a-z](\d+)$/.exec(element.id);
          if (reply) { framesLost[reply[1]] = true; }
        } else if (swap && element.tagName === "ARTICLE" && streaming(element)) {
          // A reply drawn streaming as its continuation starts, for tabs that show it
          // finished. Not for one that shows it streaming already, nor for the tab whose
          // Continue is on its way (its response draws it; swapped now, the button that
          // sent it would be gone and the response with it).
          var onPage = document.getElementById(element.id);
          if (streaming(onPage) || onPage.querySelector(".continue-button.htmx-request")) {
            drop(element);
          }
        } else if (swap && swap.indexOf("beforeend:") === 0) {
          var children = Array.prototype.slice.call(element.children);
          var fresh = children.filter(function (child) { return !shown(child); });
          children.forEach(function (child) {
            if (shown(child)) { drop(child); }  // appended messages this tab already shows
          });
          if (fresh.length && element.hasAttribute("data-after")) {
            var at = children.indexOf(fresh[0]);
            var after = at ? children[at - 1].id.slice(1) : element.getAttribute("data-after");
            if (shownIds().pop() !== after) { stale(element); }
          }
        } else if (!swap && xhr && elt && elt.id === "composer" && shown(element)) {
          drop(element);  // the socket already brought this message
        }
      });
      return dropped ? template.innerHTML : text;
    }
  });

  // This tab, to the server: its requests and its socket name it, so that a change this tab
  // asks for (a new path: Regenerate, an edit, a version switch) is drawn by its own answer
  // and not by the event that tells the conversation's other tabs.
  var TAB = Math.random().toString(36).slice(2, 12);
  var live = document.querySelector("main[ws-connect]");
  if (live) {  // before htmx connects (on DOMContentLoaded; this script is deferred)
    live.setAttribute("ws-connect", live.getAttribute("ws-connect") + "?tab=" + TAB);
  }
  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-Chat-Tab"] = TAB;
  });

  // A page the browser's back-forward cache shows again is drawn anew: what it shows (and the
  // message box's idempotency key) may be out of date. (No cache keeps a page's HTML:
  // PagesNotKeptMiddleware in chat/middleware.py.)
  window.addEventListener("pageshow", function (event) {
    if (event.persisted) { location.reload(); }
  });

  function messages() { return document.getElementById("messages"); }
  var followEnd = true;

  // An Enter that confirms what an input method (Chinese, Japanese, Korean) is composing,
  // not one that sends: Safari sends it after the composition has ended, with keyCode 229.
  function confirmsComposition(event) { return event.isComposing || event.keyCode === 229; }

  // A touch screen's keyboard has no Shift+Enter: there Enter starts a new line, and the Send
  // button (or Ctrl+Enter on a keyboard attached) sends. Enter always sent, so on a phone a
  // message of several lines could only be pasted.
  function touchKeyboard() {
    return !!window.matchMedia && window.matchMedia("(hover: none) and (pointer: coarse)").matches;
  }

  function nearBottom(el) { return el.scrollHeight - el.scrollTop - el.clientHeight < 40; }

  // Where the view stood when last looked at: a scroll event tells the reader's moves from
  // this (scrollTop alone is not enough, see below).
  var lastTop = 0;
  var lastHeight = 0;
  var lastClient = 0;

  function notePosition(el) {
    lastTop = el.scrollTop;
    lastHeight = el.scrollHeight;
    lastClient = el.clientHeight;
  }

  // The page's own scroll to the end is noted at once: the next scroll event compares with
  // it, not with the position before it. (A wheel's step up that came in the same frame was
  // folded into one scroll event with it, seen as a scroll down to the end, and following went
  // on: in most runs of a single 8 px step here.)
  function scrollToEnd() {
    var el = messages();
    if (el) {
      el.scrollTop = el.scrollHeight;
      notePosition(el);
    }
  }

  // The reader has moved up from the end and not come back to it. Told by what they did (a
  // wheel turned up, a finger drawn down, a key that scrolls up, a scroll up that the layout
  // did not cause), not only by where the view stands: a slow drag or an arrow key moves it a
  // pixel or a few at a time, and text coming in the same frame hides the move, so the next
  // text scrolled the view back to the end.
  var readerLeft = false;

  // The reader asked to follow the end again ("Jump to latest", a message sent). A smooth
  // scroll they started just before (an arrow key's, a wheel's) goes on in Chromium after it,
  // moved along by it (a script's scroll does not end the animation): its last steps up, in
  // the moment after, are not the reader leaving again, and the view keeps to the end. What
  // they do next (a key, a wheel, a finger, a press on the scroll bar) counts at once.
  var resumedAt = -Infinity;
  var ANIMATION_AFTER_RESUME_MS = 1000;

  function resumeFollowing() {
    followEnd = true;
    readerLeft = false;
    resumedAt = performance.now();
  }

  function scrollLeftOverFromBefore() {
    return performance.now() - resumedAt < ANIMATION_AFTER_RESUME_MS;
  }

  function readerMovesUp() { readerLeft = true; followEnd = false; resumedAt = -Infinity; }

  ["keydown", "wheel", "pointerdown", "touchstart"].forEach(function (name) {
    document.addEventListener(name, function () { resumedAt = -Infinity; },
      { capture: true, passive: true });
  });

  function atEnd(el) { return el.scrollHeight - el.scrollTop - el.clientHeight < 1; }

  function afterContentChange() {
    var el = messages();
    if (!el) { return; }
    var jump = document.getElementById("jump-to-latest");
    // Content that shrank (a shorter version shown) can leave nothing below the view. (Only
    // nothing: a reader who has just scrolled up a few pixels is not following.)
    if (!followEnd && atEnd(el)) { followEnd = true; readerLeft = false; }
    if (followEnd) {
      scrollToEnd();
      if (jump) { jump.hidden = true; }
    } else if (jump) {
      jump.hidden = false;
    }
  }

  // The message the page's address names (`#m12`: a message's own address, opened as a page,
  // comes to its conversation's: views.message_detail), if the page shows it.
  function messageNamed() {
    var named = /^#m\d+$/.test(location.hash) && document.getElementById(location.hash.slice(1));
    return named && named.matches("article.message") ? named : null;
  }

  document.addEventListener("DOMContentLoaded", function () {
    var el = messages();
    var named = el && messageNamed();
    if (named) {
      // The reader starts where the address put them, not at the end (which streams on). The
      // address then drops it: the page's own reloads (an out-of-date page, a redrawn draft)
      // went back to that message and stopped following the end.
      named.classList.add("named");
      history.replaceState(history.state, "", location.pathname + location.search);
      named.scrollIntoView({ block: "start" });
      notePosition(el);
      if (!atEnd(el)) { readerMovesUp(); }
      afterContentChange();
    } else if (el) {
      scrollToEnd();
    }
    if (el) {
      // The box shrinks as the message box grows (a long message typed line after line): the
      // end being followed stays in view (it went out of sight below the message box).
      if (window.ResizeObserver) {
        new ResizeObserver(function () { if (followEnd) { scrollToEnd(); } }).observe(el);
      }
      el.addEventListener("wheel", function (event) {
        if (event.deltaY < 0) { readerMovesUp(); }
      }, { passive: true });
      var fingerY = null;
      el.addEventListener("touchstart", function (event) {
        fingerY = event.touches.length === 1 ? event.touches[0].clientY : null;
      }, { passive: true });
      el.addEventListener("touchmove", function (event) {
        if (fingerY === null || event.touches.length !== 1) { return; }
        var y = event.touches[0].clientY;
        if (y > fingerY) { readerMovesUp(); }
        fingerY = y;
      }, { passive: true });
      el.addEventListener("keydown", function (event) {
        if (event.target.closest && event.target.closest("textarea, input, select")) { return; }
        if (event.key === "ArrowUp" || event.key === "PageUp" || event.key === "Home" ||
            (event.key === " " && event.shiftKey)) {
          readerMovesUp();
        }
      });
      el.addEventListener("scroll", function () {
        // A scroll up that the layout did not cause (the content did not get shorter, the box
        // no taller, as when the message box shrinks after a send) is the reader's too; one
        // down that reaches the end brings following back.
        var up = el.scrollTop < lastTop - 0.5 && el.scrollHeight >= lastHeight &&
          el.clientHeight <= lastClient;
        if (up && scrollLeftOverFromBefore()) {
          up = false;
          scrollToEnd();
        }
        var down = el.scrollTop > lastTop + 0.5;
        notePosition(el);
        if (up) { readerLeft = true; } else if (down && nearBottom(el)) { readerLeft = false; }
        followEnd = !readerLeft && nearBottom(el);
        var jump = document.getElementById("jump-to-latest");
        if (jump && followEnd) { jump.hidden = true; }
      }, { passive: true });
    }
    var jump = document.getElementById("jump-to-latest");
    if (jump) {
      jump.addEventListener("click", function () {
        resumeFollowing();
        scrollToEnd();
        jump.hidden = true;
        // The button hides itself: the focus goes to the latest message, not to the page.
        var all = el ? el.querySelectorAll("article.message") : [];
        var latest = all[all.length - 1];
        if (latest) {
          latest.setAttribute("tabindex", "-1");
          latest.focus({ preventScroll: true });
        }
      });
    }
    var text = document.getElementById("composer-text");
    if (text) {
      text.addEventListener("keydown", function (event) {
        if (event.key === "Enter" && !event.shiftKey && !confirmsComposition(event) &&
            (!touchKeyboard() || event.ctrlKey || event.metaKey)) {
          event.preventDefault();
          if (text.value.trim() && !text.readOnly) { text.form.requestSubmit(); }
        }
      });
    }
  });

  // Enter in a reply's comment box saves the comment. Left to the browser, it submits the
  // form with its first button, thumbs up, whose value on a reply rated up clears the rating.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Enter" || confirmsComposition(event) || !event.target.closest) { return; }
    var box = event.target.closest(".feedback-comment");
    if (!box || event.target.tagName !== "INPUT") { return; }
    event.preventDefault();
    var save = box.querySelector("button");
    if (save) { save.click(); }
  });

  // Phones: the conversation list slides over the chat. Its toggle says whether it is open,
  // however it was closed.
  function setSidebar(open) {
    document.body.classList.toggle("sidebar-open", open);
    // The page behind the open drawer is out of reach: Tab stays in the drawer, and nothing
    // typed goes into a box the drawer hides.
    document.querySelectorAll("body > :not(.layout), .layout > :not(#sidebar)").forEach(
      function (element) { element.inert = open; });
    document.querySelectorAll(".sidebar-toggle").forEach(function (toggle) {
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
    });
    if (open) {  // on the conversation shown, else the drawer's first control
      var link = document.querySelector('#sidebar [aria-current="page"]') ||
        document.querySelector("#sidebar a, #sidebar button");
      if (link) { link.focus(); }
    }
  }

  function visibleToggle() {
    return Array.prototype.find.call(document.querySelectorAll(".sidebar-toggle"), function (t) {
      return t.offsetParent !== null;
    });
  }

  // A window widened past the phone layout shows the list beside the chat: no drawer.
  var phoneLayout = window.matchMedia("(max-width: 720px)");
  phoneLayout.addEventListener("change", function () {
    if (!phoneLayout.matches && document.body.classList.contains("sidebar-open")) {
      setSidebar(false);
    }
  });

  // Closed by its own button, Escape or a tap beside it: the focus goes back to the button
  // that opens it.
  function closeSidebarToToggle() {
    setSidebar(false);
    var toggle = visibleToggle();
    if (toggle) { toggle.focus(); }
  }

  document.addEventListener("click", function (event) {
    var toggle = event.target.closest ? event.target.closest(".sidebar-toggle") : null;
    if (toggle) {
      setSidebar(!document.body.classList.contains("sidebar-open"));
    } else if (event.target.closest && event.target.closest(".sidebar-close")) {
      closeSidebarToToggle();
    } else if (document.body.classList.contains("sidebar-open") && !event.target.closest(".sidebar")) {
      closeSidebarToToggle();
    }
    // A menu open in the header closes when you click elsewhere.
    document.querySelectorAll("details.menu[open]").forEach(function (menu) {
      if (!menu.contains(event.target)) { menu.removeAttribute("open"); }
    });
  });

  // On a phone the system prompt is an item of the conversation's menu: it opens the
  // prompt's panel in place of that menu, its box focused.
  document.addEventListener("click", function (event) {
    var item = event.target.closest ? event.target.closest(".prompt-item") : null;
    var prompt = item && document.querySelector("details.prompt-menu");
    if (!prompt) { return; }
    item.closest("details").removeAttribute("open");
    prompt.setAttribute("open", "");
    var box = document.getElementById("settings-system-prompt");
    if (box) { box.focus(); }
  });

  // The start page's suggested prompts: one click sends one as the first message.
  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest(".suggestions [data-prompt]") : null;
    var text = document.getElementById("composer-text");
    if (button && text) {
      text.value = button.getAttribute("data-prompt");
      text.form.requestSubmit();
    }
  });

  // The demo model's notice, hidden for good in this browser: the cookie named on its button
  // tells the server to leave it out of every page (chat/context_processors.py). The focus,
  // on the button that goes, moves to the message box.
  document.addEventListener("click", function (event) {
    var hide = event.target.closest ? event.target.closest(".demo-notice-hide") : null;
    if (!hide) { return; }
    document.cookie = hide.getAttribute("data-cookie") + "=hidden; path=/; max-age=31536000; SameSite=Lax" +
      (location.protocol === "https:" ? "; Secure" : "");
    hide.closest(".demo-notice").remove();
    var text = document.getElementById("composer-text");
    if (text) { text.focus(); }
  });

  // The skip link moves the focus, not only the scroll position.
  document.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest(".skip-link") : null;
    var target = link && document.querySelector(link.getAttribute("href"));
    if (target) {
      event.preventDefault();
      target.focus();
    }
  });

  // Editing one of your messages: its text gives way to a box holding it, until it is sent or
  // cancelled (the Cancel button puts the message back in the box); Escape in the box closes
  // it keeping what was typed, for the next Edit (it threw the edit away, a long one too, at
  // a key pressed by mistake).
  function setEditing(article, editing, keep) {
    var button = article.querySelector(".edit-button");
    var form = article.querySelector(".edit-form");
    if (!button || !form) { return; }
    article.classList.toggle("editing", editing);
    form.hidden = !editing;
    button.setAttribute("aria-expanded", editing ? "true" : "false");
    var area = form.querySelector("textarea");
    if (editing) {
      area.focus();
      area.setSelectionRange(area.value.length, area.value.length);
    } else {
      if (!keep) { area.value = area.defaultValue; }
      var refused = form.nextElementSibling;  // the reason a send was refused
      if (refused && refused.classList.contains("action-error")) { refused.remove(); }
      button.focus();
    }
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest(".edit-button, .edit-cancel") : null;
    if (button) { setEditing(button.closest("article"), button.classList.contains("edit-button")); }
  });

  document.addEventListener("keydown", function (event) {
    var editing = event.target.closest ? event.target.closest(".edit-form") : null;
    if (event.key === "Escape" && editing) {
      setEditing(editing.closest("article"), false, true);
      return;
    }
    // Ctrl+Enter (Command+Enter on a Mac) saves an edit and sends it; Enter alone is a new
    // line there, as an edit is often long.
    if (event.key === "Enter" && editing && (event.ctrlKey || event.metaKey) &&
        !confirmsComposition(event)) {
      event.preventDefault();
      var box = editing.querySelector("textarea");
      if (box && box.value.trim()) { editing.requestSubmit(); }
      return;
    }
    var menu = event.key === "Escape" && document.querySelector("details.menu[open]");
    if (menu) {
      menu.removeAttribute("open");
      // (On a phone the system prompt's button is hidden: it was opened from the conversation's menu.)
      var button = menu.querySelector("summary");
      if (!button.getClientRects().length) {
        button = document.querySelector(".conversation-menu > summary") || button;
      }
      button.focus();
      return;
    }
    if (event.key === "Escape" && document.body.classList.contains("sidebar-open")) {
      closeSidebarToToggle();
      return;
    }
    // Escape stops the reply from the message box or the page, not from another field, whose
    // own Escape it is: it stopped the reply from the search box (which it then did not clear)
    // or a feedback comment being written, and the rest of the answer was lost.
    var field = event.target.closest &&
      event.target.closest("input, textarea, select, [contenteditable]");
    if (event.key === "Escape" && (!field || field.id === "composer-text") &&
        !confirmsComposition(event) && stopActiveReply()) {
      event.preventDefault();
    }
  });

  // A message goes below the last message this page shows (`after`). If another tab or window
  // has changed the conversation since (switched versions, sent a turn), the server refuses it
  // (409 with X-Conversation-Changed): the page reloads to show the conversation as it is, and
  // puts what the user typed back in the box, with the reason. What is typed in the box is
  // kept the same way as it is typed (for this tab and page), so that a reload loses nothing;
  // it goes once the message is sent.
  // A draft is the signed-in account's (as the sidebar names it): whoever signs in next in
  // this tab does not see it, and signing out, or a page for nobody (the login page), drops
  // every draft of the tab; but not after the tab learnt that its session ended elsewhere
  // (a logout in another tab, an expiry): what was being typed waits for the account's
  // login, until a page of an account loads.
  var DRAFT_PREFIX = "chat-draft:";
  var DRAFT_KEY = null;
  var KEPT_FOR_LOGIN = "chat-drafts-kept-for-login";

  function keepDraftsForLogin(keep) {
    try {
      if (keep) { sessionStorage.setItem(KEPT_FOR_LOGIN, "1"); }
      else { sessionStorage.removeItem(KEPT_FOR_LOGIN); }
    } catch (e) { /* no storage: nothing kept */ }
  }

  function draftsKeptForLogin() {
    try { return sessionStorage.getItem(KEPT_FOR_LOGIN) === "1"; } catch (e) { return false; }
  }

  function dropDrafts() {
    try {
      for (var i = sessionStorage.length - 1; i >= 0; i--) {
        var key = sessionStorage.key(i);
        if (key && key.indexOf(DRAFT_PREFIX) === 0) { sessionStorage.removeItem(key); }
      }
    } catch (e) { /* no storage: nothing kept */ }
  }

  document.addEventListener("DOMContentLoaded", function () {
    var account = document.querySelector("#sidebar .account span");
    if (account && account.textContent) {
      DRAFT_KEY = DRAFT_PREFIX + encodeURIComponent(account.textContent) + ":" + location.pathname;
      keepDraftsForLogin(false);
    } else if (!draftsKeptForLogin()) {
      dropDrafts();
    }
  });

  document.addEventListener("submit", function (event) {
    var action = event.target.getAttribute && event.target.getAttribute("action") || "";
    if (event.target.closest && event.target.closest(".account") && /logout/.test(action)) {
      keepDraftsForLogin(false);
      dropDrafts();
    }
  });

  function keepDraft(text, reason) {
    if (!DRAFT_KEY) { return false; }
    try {
      if (text || reason) {
        sessionStorage.setItem(DRAFT_KEY, JSON.stringify({ text: text, reason: reason || "" }));
      } else {
        sessionStorage.removeItem(DRAFT_KEY);
      }
      return true;
    } catch (e) {
      // No storage (private mode, full): the text stays in the box, and an older draft goes.
      try { sessionStorage.removeItem(DRAFT_KEY); } catch (ignored) { /* none at all */ }
      return false;
    }
  }

  document.addEventListener("input", function (event) {
    if (event.target.id !== "composer-text") { return; }
    keepDraft(event.target.value, "");
    // What the line said of a message no longer in the box is said of nothing now
    var error = document.getElementById("composer-error");
    if (!event.target.value && error && !error.hidden && !error.hasAttribute("data-until-reply-ends")
        && !error.querySelector("a")) {  // (not "signed out", with its way back)
      error.hidden = true;
      error.textContent = "";
    }
  });

  // Sent: before htmx handles the answer, which may be a redirect (the start page's).
  document.addEventListener("htmx:beforeOnLoad", function (event) {
    var xhr = event.detail.xhr;
    if (event.detail.elt && event.detail.elt.id === "composer" && xhr && xhr.status < 400) {
      keepDraft("", "");
    }
  });

  document.addEventListener("htmx:configRequest", function (event) {
    if (!event.detail.elt || event.detail.elt.id !== "composer") { return; }
    var shown = document.querySelectorAll("#messages > article[id^='m']");
    var last = shown.length ? parseInt(shown[shown.length - 1].id.slice(1), 10) : 0;
    event.detail.formData.set("after", String(last || 0));
  });

  function redrawKeepingDraft(form, reason) {
    if (!keepDraft(form.querySelector("textarea").value, reason)) {
      return false;  // no storage: the text stays in the box, with the reason
    }
    location.reload();
    return true;
  }

  document.addEventListener("DOMContentLoaded", function () {
    var saved = null;
    if (!DRAFT_KEY) { return; }
    try {
      saved = JSON.parse(sessionStorage.getItem(DRAFT_KEY) || "null");
    } catch (e) {
      return;
    }
    var textarea = document.getElementById("composer-text");
    var error = document.getElementById("composer-error");
    if (!saved || !textarea) { return; }
    if (!textarea.value) { textarea.value = saved.text || ""; }
    if (error && saved.reason) { error.textContent = saved.reason; error.hidden = false; }
    keepDraft(textarea.value, "");  // the reason is said once
  });

  document.addEventListener("htmx:afterRequest", function (event) {
    var form = event.detail.elt;
    var error = document.getElementById("composer-error");
    if (!form || form.id !== "composer") {
      // Any other action that failed (an edit refused, a retry too late): say why, beside
      // it when it belongs to a message (the message box may be out of sight), else under the
      // message box.
      var xhr = event.detail.xhr;
      if (!event.detail.successful && xhr && xhr.status >= 400 && xhr.responseText) {
        var near = actionErrorSpot(form);
        if (near) {
          showActionError(near, refusal(xhr), Boolean(xhr.getResponseHeader("X-Conversation-Busy")));
        } else if (error) {
          error.textContent = refusal(xhr);
          error.hidden = false;
        }
        if (xhr.status === SIGNED_OUT) { signedOut(connectionStatus()); }
      }
      return;
    }
    if (event.detail.successful) {
      // The box empties of what was sent; what was typed since (while the answer was on its
      // way: the reply shows over the socket first) stays.
      var box = form.querySelector("textarea");
      if (box.value === form.getAttribute("data-sent")) { box.value = ""; }
      if (error) { error.hidden = true; error.textContent = ""; }
      resumeFollowing();
      afterContentChange();
      toTopOfSidebar();
    } else if (error) {
      // Keep what the user typed; say what went wrong.
      var xhr = event.detail.xhr;
      if (xhr && xhr.status === 409 && xhr.getResponseHeader("X-Conversation-Changed")
          && redrawKeepingDraft(form, xhr.responseText)) {
        return;
      }
      if (xhr && xhr.status === SIGNED_OUT) {
        // The session ended (chat/views.py): the message stays in the box, and in the draft
        // that the page shows again after the login.
        keepDraft(form.querySelector("textarea").value, "");
        signedOut(error);
        error.appendChild(document.createTextNode(" Your message is still here."));
        error.hidden = false;
        signedOut(connectionStatus());
        return;
      }
      error.textContent = (xhr && xhr.status && xhr.responseText) ? refusal(xhr) : UNREACHABLE;
      error.hidden = false;
      // "Still replying" (409) goes once the reply ends: it stayed after a Stop, or after
      // the reply finished, saying the assistant was still replying.
      error.toggleAttribute("data-until-reply-ends", Boolean(xhr && xhr.status === 409));
    }
  });

  // A search, or the archived list, says what it found (a screen reader hears the count, not
  // the list read out). The list itself is not a live region: a message sent moves its
  // conversation to the top, and every move was read out.
  document.addEventListener("htmx:afterSwap", function (event) {
    var list = event.detail.target;
    var asked = event.detail.requestConfig && event.detail.requestConfig.elt;
    var status = document.getElementById("sidebar-status");
    if (!list || list.id !== "conversation-list" || !status || !asked || asked === list) { return; }
    var none = list.querySelector("li.muted");
    var count = list.querySelectorAll('a[id^="conv-link-"]').length;
    var more = list.querySelector(".load-more") ? " shown, more as you scroll" : "";
    var what = list.querySelector(".list-mode") ? " archived" : "";
    status.textContent = none ? none.textContent.trim()
      : count + what + (count === 1 ? " conversation" : " conversations") + more + ".";
  });

  // A message sent makes its conversation the most recently active: first under "Today" in
  // the sidebar, as a reload lists it (it stayed where it was); a pinned one stays among the
  // pinned. Only the list of every conversation is so ordered (not a search's, nor the
  // archived ones'). One the list does not show (older than its first page: opened from a
  // search or a link) is asked for with the list's first page, which now begins with it.
  function toTopOfSidebar() {
    var list = document.getElementById("conversation-list");
    var link = list && list.querySelector('a[aria-current="page"]');
    var search = document.getElementById("sidebar-search");
    if (!list || list.querySelector(".list-mode") || (search && search.value)) {
      return;
    }
    if (!link) {
      var current = search && search.form.querySelector('input[name="current"]');
      if (current) {
        htmx.ajax("GET", search.form.getAttribute("hx-get") + "?current="
          + encodeURIComponent(current.value), { target: list, swap: "innerHTML" });
      }
      return;
    }
    var item = link.closest("li");
    var headings = Array.prototype.filter.call(list.children, function (child) {
      return child.classList.contains("group-heading");
    });
    var groupOf = function (element) {
      var found = null;
      headings.forEach(function (heading) {
        if (heading.compareDocumentPosition(element) & Node.DOCUMENT_POSITION_FOLLOWING) {
          found = heading;
        }
      });
      return found;
    };
    var group = groupOf(item);
    if (group && group.textContent === "Pinned") { return; }
    var today = headings.find(function (heading) { return heading.textContent === "Today"; });
    if (!today) {
      today = document.createElement("li");
      today.className = "group-heading";
      today.appendChild(document.createElement("h2")).textContent = "Today";
      // After the pinned ones, before the first of the others
      var first = Array.prototype.find.call(list.children, function (child) {
        if (child.classList.contains("group-heading") || !child.querySelector("a")) { return false; }
        var itsGroup = groupOf(child);
        return !itsGroup || itsGroup.textContent !== "Pinned";
      });
      list.insertBefore(today, first || list.querySelector(".load-more"));
    }
    if (today.nextElementSibling === item) { return; }
    var next = item.nextElementSibling;
    today.insertAdjacentElement("afterend", item);
    // The group it left, if now empty, goes with its heading
    if (group && group !== today && (!next || next.classList.contains("group-heading")
        || next.classList.contains("load-more")) && group.nextElementSibling === next) {
      group.remove();
    }
  }

  // The list changed in another tab (a conversation new, renamed, pinned, archived or
  // deleted): the socket says so (chat/fragments.py, CONVERSATIONS_CHANGED) and the list is
  // asked for again as this tab last asked for it (searched, or the archived ones) and as
  // long as it is (the pages "Show more" added), now if the page is seen, or when it is seen
  // again. Quietly: the list is not a live region, and htmx keeps the focus on what had it
  // (by its id). The tab that made the change is not told: it asks for its list itself
  // (below). One request at a time, and an answer older than the latest request for the list
  // (a search typed since) is not drawn.
  var LIST_CHANGED = '<template class="conversations-changed"></template>';
  var listStale = false;
  var listRedrawing = false;
  var listAsked = null;  // the address that last filled the list (none yet: as drawn)
  var listRequests = 0;
  document.addEventListener("htmx:wsBeforeMessage", function (event) {
    if (event.detail.message !== LIST_CHANGED) { return; }
    event.preventDefault();
    listStale = true;
    redrawListIfSeen();
  });
  document.addEventListener("visibilitychange", redrawListIfSeen);
  // So does this tab's own pin or archive (the conversation's menu). (Its form is swapped
  // out before the request ends: `requestConfig.elt` is still the form.)
  document.addEventListener("htmx:afterRequest", function (event) {
    var config = event.detail.requestConfig;
    var elt = config && config.elt;
    if (event.detail.successful && elt && elt.closest && elt.closest("#organize")) {
      listStale = true;
      redrawListIfSeen();
    }
  });
  function fillsTheList(detail) {
    return detail.target && detail.target.id === "conversation-list";
  }
  document.addEventListener("htmx:beforeRequest", function (event) {
    if (fillsTheList(event.detail)) {
      listRequests += 1;
      event.detail.requestConfig.listRequest = listRequests;
    }
  });
  document.addEventListener("htmx:beforeSwap", function (event) {
    var config = event.detail.requestConfig;
    if (fillsTheList(event.detail) && config && config.listRequest !== listRequests) {
      event.detail.shouldSwap = false;
    }
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    if (fillsTheList(event.detail) && event.detail.pathInfo) {
      listAsked = event.detail.pathInfo.finalRequestPath;
    }
  });
  function redrawListIfSeen() {
    var list = document.getElementById("conversation-list");
    var search = document.getElementById("sidebar-search");
    if (!listStale || listRedrawing || document.visibilityState !== "visible" || !list || !search) {
      return;
    }
    listStale = false;
    var asked = listAsked;
    if (!asked) {  // the list the page was drawn with: all, or the search in the address
      var params = new URLSearchParams();
      if (search.value) { params.set("q", search.value); }
      var current = search.form.querySelector('input[name="current"]');
      if (current) { params.set("current", current.value); }
      asked = search.form.getAttribute("hx-get") + "?" + params.toString();
    }
    // As long as it is: the pages "Show more" added stay (a list scrolled down kept its place).
    var address = new URL(asked, window.location.href);
    address.searchParams.set("shown", list.querySelectorAll('a[id^="conv-link-"]').length);
    asked = address.pathname + address.search;
    listRedrawing = true;
    htmx.ajax("GET", asked, { source: list, target: list, swap: "innerHTML" }).then(function () {
      listRedrawing = false;
      redrawListIfSeen();  // (told again meanwhile)
    }, function () {  // (not reached: asked again at the next change, or when seen again)
      listRedrawing = false;
      listStale = true;
    });
  }
  // Told nothing while its socket was away: a socket that opens after another (this page's
  // first may have closed within its first second) asks for the list again once it stays up
  // (a second after it opened), or, offline then, once the browser is back online. (Not as
  // it opens: a socket whose session ended is opened to be told so, and a request then
  // fails; one opened with a cookie just replaced would send the old one, whose answer may
  // delete the new.)
  var socketOpenedBefore = false;
  function listAfterSocketBack(offline) {
    listStale = true;
    if (!offline) { redrawListIfSeen(); }
  }
  window.addEventListener("online", function () { redrawListIfSeen(); });
  // A page with no socket (the start page) is told nothing: its list is asked for again each
  // time the page is seen again.
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible" && !document.querySelector("main[ws-connect]")) {
      listStale = true;
      redrawListIfSeen();
    }
  });

  // The reason a request was refused, as the server said it in plain text; any other answer
  // (a page of HTML: a 403 or 404 page, a proxy's error) is not shown as it is.
  function refusal(xhr) {
    var type = xhr.getResponseHeader("Content-Type") || "";
    if (type.indexOf("text/plain") === 0) { return xhr.responseText; }
    return "That did not work (the server answered " + xhr.status + "). Reload the page and try again.";
  }

  // Where a request made from inside a message says why it was refused: after its form, or
  // under the message's header row for the version switcher (the row is a flex line); one
  // made from a menu of the header (a rename), after its form, in the menu.
  function actionErrorSpot(elt) {
    if (!elt.closest) { return null; }
    if (elt.closest(".chat-header .menu-body")) { return elt.closest("form"); }
    // (the conversations' list: a search, the next page; the drawer covers the page on a phone)
    if (elt.closest("#sidebar")) { return elt.closest("form") || elt; }
    if (!elt.closest("article")) { return null; }
    return elt.closest(".role") || elt.closest("form") || elt.parentElement;
  }

  // One line of error after the spot that failed, replaced by the next one, and gone when a
  // request from the same spot is sent again; one that says a reply is still being written
  // (`busy`) goes when it ends too.
  function showActionError(near, text, busy) {
    var line = near.nextElementSibling;
    if (!line || !line.classList.contains("action-error")) {
      line = document.createElement("p");
      line.className = "action-error";
      line.setAttribute("role", "alert");
      near.insertAdjacentElement("afterend", line);
    }
    line.textContent = text;
    line.toggleAttribute("data-until-reply-ends", Boolean(busy));
    // Said where it was asked, which may be at the foot of the messages, under the box
    if (line.scrollIntoView) { line.scrollIntoView({ block: "nearest" }); }
  }

  document.addEventListener("htmx:beforeRequest", function (event) {
    var sending = event.detail.elt;
    if (sending && sending.id === "composer") {
      sending.setAttribute("data-sent", sending.querySelector("textarea").value);
    }
    var near = event.detail.elt ? actionErrorSpot(event.detail.elt) : null;
    var line = near && near.nextElementSibling;
    if (line && line.classList.contains("action-error")) { line.remove(); }
  });

  // A message that did not reach the server stays in the box, with this line; it goes once
  // the server can be reached again (the network is back, or the socket opened again).
  var UNREACHABLE = "Could not reach the server. Your message is still here; try again.";
  function reachableAgain() {
    var error = document.getElementById("composer-error");
    if (error && (error.textContent === UNREACHABLE || error.textContent === ACTION_UNREACHABLE)) {
      error.hidden = true;
      error.textContent = "";
    }
    document.querySelectorAll(".action-error").forEach(function (line) {
      if (line.textContent === ACTION_UNREACHABLE) { line.remove(); }
    });
  }

  // The model picker shows the model the conversation has: a change the server did not save
  // (unreachable, or refused) goes back, and the line under the message box says why. It
  // stayed, and the next reply came from the model before it, with nothing said.
  document.addEventListener("htmx:afterRequest", function (event) {
    var form = event.detail.elt;
    var select = form && form.id === "model-form" ? form.querySelector("select") : null;
    if (!select) { return; }
    // (the model this request sent: another may have been picked since, its request queued)
    var config = event.detail.requestConfig;
    var sent = config && config.formData && config.formData.get ? config.formData.get("model")
      : select.value;
    Array.prototype.forEach.call(select.options, function (option) {
      if (event.detail.successful) {
        option.defaultSelected = option.value === sent;
      } else if (option.defaultSelected) {
        select.value = option.value;
      }
    });
  });

  // Any other action that did not reach the server (an edit sent, Regenerate, Pin, a rating,
  // a rename) says so beside it, as a refusal does: it failed with nothing said, the edit
  // box left open, Pin still offered, the thumb not pressed.
  var ACTION_UNREACHABLE = "Could not reach the server. Try again.";
  document.addEventListener("htmx:sendError", function (event) {
    var error = document.getElementById("composer-error");
    var elt = event.detail.elt;
    if (!elt) { return; }
    if (elt.id === "composer") {
      if (error) {
        error.textContent = UNREACHABLE;
        error.hidden = false;
      }
      return;
    }
    if (elt.matches && elt.matches("article")) { return; }  // (a reply the page fetched itself)
    var near = actionErrorSpot(elt);
    if (near) {
      showActionError(near, ACTION_UNREACHABLE, false);
    } else if (error) {
      error.textContent = ACTION_UNREACHABLE;
      error.hidden = false;
    }
  });

  // While the socket is down the page says "Reconnecting…" (a status line under the header,
  // announced politely). The WebSocket extension reconnects by itself after an abnormal close;
  // the server closes with 4013 ("try again later", chat/middleware.py) while Redis or the
  // database is away, and that one is reconnected here, with a growing, jittered delay. When
  // the session ended (4401) the line says so instead, with a link to log in again; when the
  // account has too many sockets open (4429), it says that, and the tab does not reconnect.
  var SIGNED_OUT = 401;  // an action's answer once the session ended (chat/views.py)
  var TRY_AGAIN_LATER = 4013;
  var SESSION_ENDED = 4401;  // chat/socket_protocol.py
  var TOO_MANY_SOCKETS = 4429;  // chat/socket_protocol.py
  var CONVERSATION_DELETED = 4410;  // chat/socket_protocol.py
  var sessionAskedAt = 0;
  var sessionTries = 0;

  // The session ended (the socket was told, or an action was refused) and the page no longer
  // loads without a login: say so, with the way back (the page asks for a login, then comes
  // back here), the tab's drafts kept for it.
  function signedOut(status) {
    keepDraftsForLogin(true);
    if (!status) { return; }
    status.textContent = "You were signed out. ";
    var again = document.createElement("a");
    again.href = location.pathname;
    again.textContent = "Log in again";
    status.appendChild(again);
    status.appendChild(document.createTextNode("."));
  }
  // The conversation was deleted (in another tab or window, or by staff): the page says so,
  // its replies stop where they stood, and the message box keeps what was typed (to copy)
  // but sends nothing, as it would be refused. Not reconnected: it is gone.
  var deleting = false;  // this tab deletes it: it goes to the start page, nothing to say
  document.addEventListener("htmx:beforeRequest", function (event) {
    if (event.detail.elt && event.detail.elt.matches && event.detail.elt.matches(".delete-form")) {
      deleting = true;
    }
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    if (event.detail.elt && event.detail.elt.matches && event.detail.elt.matches(".delete-form")
        && !event.detail.successful) {
      deleting = false;
    }
  });
  // Nothing on a deleted conversation's page asks the server anything more: it would be
  // refused (an edit, Regenerate, a version, a rating).
  document.addEventListener("htmx:confirm", function (event) {
    if (event.target.closest && event.target.closest("main.chat.deleted")) {
      event.preventDefault();
    }
  });

  function conversationDeleted(status) {
    if (deleting) { return; }
    var chat = document.querySelector("main.chat");
    if (chat) { chat.classList.add("deleted"); }
    var stopFocused = document.activeElement && document.activeElement.matches(".composer-stop");
    var listed = document.querySelector('#conversation-list a[aria-current="page"]');
    if (listed) {
      var item = listed.closest("li");
      var before = item.previousElementSibling;
      var after = item.nextElementSibling;
      item.remove();
      if (before && before.classList.contains("group-heading") &&
          (!after || after.classList.contains("group-heading"))) {
        before.remove();  // its day's only conversation
      }
    }
    document.querySelectorAll("#messages .stop-form").forEach(function (form) { form.remove(); });
    syncComposer();
    var text = document.getElementById("composer-text");
    if (text) { text.readOnly = true; }
    document.querySelectorAll("#composer button").forEach(function (button) {
      button.disabled = true;
    });
    if (!status) { return; }
    status.textContent = "This conversation was deleted. ";
    var start = document.createElement("a");
    var newConversation = document.querySelector("a.new-conversation");
    start.href = newConversation ? newConversation.href : "/";
    start.textContent = "Start a new one";
    status.appendChild(start);
    status.appendChild(document.createTextNode("."));
    if (stopFocused) { start.focus(); }  // Stop is gone: the focus goes on to the way out
  }
  // Too many tabs (4429): what this tab asks that would start a reply is not sent (the text
  // stays in the box), and says why; looked at again, the tab tries its socket once more.
  var TOO_MANY_TABS = "Too many tabs are open for this account. Close one, then come back to this tab.";
  var NO_REPLIES_HERE = "This tab cannot show replies while too many tabs are open. "
    + "Close one, then come back to this tab; your message is still here.";
  var refusedSocket = null;
  document.addEventListener("htmx:confirm", function (event) {
    var target = event.target;
    if (!target.closest || !target.closest("main.chat.socketless")) { return; }
    if (!target.closest("#composer, .edit-form, .retry-button, .continue-button")) { return; }
    event.preventDefault();
    trySocketAgain();  // (the tab the user is in: others may have closed meanwhile)
    var near = target.closest("#composer") ? null : actionErrorSpot(target);
    if (near) {
      showActionError(near, NO_REPLIES_HERE, false);
      return;
    }
    var error = document.getElementById("composer-error");
    if (error) {
      error.textContent = NO_REPLIES_HERE;
      error.hidden = false;
      error.removeAttribute("data-until-reply-ends");
    }
  });
  function trySocketAgain() {
    if (refusedSocket && document.visibilityState === "visible") {
      var wrapper = refusedSocket;
      refusedSocket = null;
      wrapper.reconnect();
    }
  }
  document.addEventListener("visibilitychange", trySocketAgain);
  window.addEventListener("focus", trySocketAgain);
  setInterval(trySocketAgain, 30000);  // (tabs closed elsewhere, this one looked at all along)
  function socketBack() {
    var chat = document.querySelector("main.chat.socketless");
    if (!chat) { return; }
    chat.classList.remove("socketless");
    var error = document.getElementById("composer-error");
    if (error && error.textContent === NO_REPLIES_HERE) { error.hidden = true; error.textContent = ""; }
    document.querySelectorAll(".action-error").forEach(function (line) {
      if (line.textContent === NO_REPLIES_HERE) { line.remove(); }
    });
  }

  var retries = 0;
  var openedAt = 0;
  var settled = null;

  function connectionStatus() {
    var status = document.getElementById("connection-status");
    var header = document.querySelector("main.chat > .chat-header");
    if (!status && header) {
      // Present (and empty) from the start: a live region announces changes to its text.
      status = document.createElement("p");
      status.id = "connection-status";
      status.className = "connection-status";
      status.setAttribute("role", "status");
      // In the header, drawn over the top of the messages (chat.css): its showing and going
      // must not move what the user is reading.
      header.appendChild(status);
    }
    return status;
  }
  document.addEventListener("DOMContentLoaded", connectionStatus);

  document.addEventListener("htmx:wsClose", function (event) {
    clearTimeout(settled);
    openSocket = null;
    var status = connectionStatus();
    var close = event.detail.event;
    var wrapper = event.detail.socketWrapper;
    if (close && close.code === SESSION_ENDED) {
      // Logged out (here or in another tab), deactivated, or the session expired or was
      // ended by a new password. But a password changed in this browser ends the session
      // the socket was opened with and gives the cookie a new one: the socket, opened again
      // with it, is let in. It may close before this browser has the answer that carries the
      // new cookie: tried at once, then again a moment later, before the tab says it was
      // signed out. Asked by the socket, not by loading the page: the page's answer to the
      // old cookie deletes the cookie, the new one too if that came in first.
      if (Date.now() - sessionAskedAt > 10000) { sessionTries = 0; }
      if (sessionTries < 2 && wrapper) {
        sessionAskedAt = Date.now();
        setTimeout(function () { wrapper.reconnect(); }, sessionTries === 0 ? 0 : 1500);
        sessionTries += 1;
        return;
      }
      signedOut(status);
      return;
    }
    if (close && close.code === CONVERSATION_DELETED) {
      conversationDeleted(status);
      return;
    }
    if (close && close.code === TOO_MANY_SOCKETS) {
      // Not reconnected at once: it would be refused again while the others stay open. It
      // tries again when the tab is looked at again (another may have been closed meanwhile).
      // Without a socket this tab would not show a reply it started: it starts none.
      refusedSocket = wrapper || null;
      var chat = document.querySelector("main.chat");
      if (chat) { chat.classList.add("socketless"); }
      if (status) { status.textContent = TOO_MANY_TABS; }
      return;
    }
    if (status) { status.textContent = "Reconnecting…"; }
    if (close && close.code === TRY_AGAIN_LATER && wrapper && document.body.contains(event.target)) {
      if (Date.now() - openedAt > 5000) { retries = 0; }  // it had worked: start over
      var delay = 250 + Math.random() * Math.min(500 * Math.pow(2, retries), 8000);
      retries += 1;
      setTimeout(function () { wrapper.reconnect(); }, delay);
    }
  });

  // After a (re)connect, ask for every reply this page still shows as streaming: the socket
  // answers with a snapshot (still streaming) or the saved reply (finished meanwhile).
  var openSocket = null;
  function resyncStreaming(socket) {
    document.querySelectorAll("article.status-pending, article.status-streaming").forEach(function (article) {
      var id = parseInt(article.id.slice(1), 10);
      if (id) { socket.send(JSON.stringify({ resync: id })); }
    });
  }

  // The browser lost the network: the socket may stay open a while (a phone on a dead
  // connection), and a reply stood still with nothing said. The line says so; once the
  // network is back it goes, and the page asks again for what streams (a socket that closed
  // meanwhile reconnects, and asks as it opens).
  // (It speaks of the reply only while one streams.)
  var OFFLINE = "You are offline.";
  var OFFLINE_STREAMING = "You are offline. The reply goes on once you are back online.";
  function offlineLine() { return activeStopForm() ? OFFLINE_STREAMING : OFFLINE; }
  function saysOffline(status) {
    return status.textContent === OFFLINE || status.textContent === OFFLINE_STREAMING;
  }
  window.addEventListener("offline", function () {
    var status = connectionStatus();
    if (status && !status.textContent) { status.textContent = offlineLine(); }
  });
  window.addEventListener("online", function () {
    var status = connectionStatus();
    if (status && saysOffline(status)) { status.textContent = ""; }
    reachableAgain();
    if (openSocket) { resyncStreaming(openSocket); }
  });

  document.addEventListener("htmx:wsOpen", function (event) {
    openedAt = Date.now();
    var back = socketOpenedBefore;  // (not this page's first socket)
    socketOpenedBefore = true;
    // Say it is back only once the socket stays up: during an outage the server accepts and
    // closes at once.
    clearTimeout(settled);
    settled = setTimeout(function () {
      var status = connectionStatus();
      // (The network may have gone in the meantime: that line stays. It was cleared here, and
      // the page said nothing while offline.)
      var offline = navigator.onLine === false;
      if (status) { status.textContent = offline ? offlineLine() : ""; }
      if (!offline) { reachableAgain(); }
      socketBack();
      if (back) { listAfterSocketBack(offline); }
    }, 1000);
    openSocket = event.detail.socketWrapper;
    resyncStreaming(openSocket);
  });

  // Actions that re-render the message list take the focused button away with the old list.
  // The version switcher keeps the focus on the switcher that was used (or its other button,
  // once this one is disabled at the end of the versions); Regenerate, Retry, Continue and an
  // edit put it on the new reply's Stop button, or on the reply.
  var focusAfterSwap = null;
  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail.elt;
    if (!elt || !elt.matches) { return; }
    if (elt.hasAttribute("data-focus-key")) {
      focusAfterSwap = elt.getAttribute("data-focus-key");
    } else if (elt.matches(".retry-button, .continue-button, .edit-form")) {
      focusAfterSwap = "reply";
    } else {
      focusAfterSwap = null;
    }
  });
  document.addEventListener("htmx:afterSettle", function (event) {
    if (!focusAfterSwap || !event.detail.target || event.detail.target.id !== "messages") { return; }
    var key = focusAfterSwap;
    focusAfterSwap = null;
    if (key === "reply") {
      var replies = document.querySelectorAll("#messages article.assistant");
      if (replies.length) { focusReply(replies[replies.length - 1]); }
      return;
    }
    var button = document.querySelector('[data-focus-key="' + key + '"]');
    if (button && button.disabled) {
      button = button.parentElement.querySelector(".version-button:not([disabled])");
    }
    if (button) { button.focus(); }
  });

  // Another version chosen with its switcher shows where the switcher is: the view does not
  // follow to the end (from a short version, the long one showed from its last line, the
  // switcher and the focus on it out of sight above). "Jump to latest" goes there.
  // The switcher also stays where it stood in the view: with the view scrolled from the top,
  // Chromium's scroll anchoring, its anchor swapped out with the list, took the view to the end.
  var switcherAt = null;
  document.addEventListener("htmx:beforeSwap", function (event) {
    var elt = event.detail.requestConfig ? event.detail.requestConfig.elt : event.detail.elt;
    if (event.detail.shouldSwap && elt && elt.hasAttribute && elt.hasAttribute("data-focus-key")) {
      followEnd = false;
      switcherAt = { key: elt.getAttribute("data-focus-key"), top: elt.getBoundingClientRect().top };
    }
  });
  document.addEventListener("htmx:afterSwap", function () {
    var kept = switcherAt;
    switcherAt = null;
    var el = messages();
    var button = kept && document.querySelector('[data-focus-key="' + kept.key + '"]');
    if (!el || !button) { return; }
    el.scrollTop += button.getBoundingClientRect().top - kept.top;
    notePosition(el);
  });

  // The element that last had the focus: a button hidden while focused leaves none.
  var lastFocus = null;
  document.addEventListener("focusin", function (event) { lastFocus = event.target; });

  // The archived conversations: the footer's Archived button is hidden while the list shows
  // them (chat.css), and the list's "Back to all" shows them all again; the focus goes from
  // the one used to the other, not to the page.
  document.addEventListener("htmx:afterSettle", function (event) {
    var list = event.detail.target;
    if (!list || list.id !== "conversation-list" || !lastFocus) { return; }
    var toAll = list.querySelector(".list-mode button");
    var toArchived = document.querySelector(".archived-toggle");
    if (lastFocus === toArchived && toAll) {
      toAll.focus();
    } else if (!lastFocus.isConnected && lastFocus.closest(".list-mode") && toArchived) {
      toArchived.focus();
    }
  });

  function focusReply(article) {
    syncComposer();
    var stop = document.querySelector("#composer.busy .composer-stop");
    if (stop && article.querySelector(".stop-form")) { stop.focus(); return; }
    article.setAttribute("tabindex", "-1");
    article.focus({ preventScroll: true });
  }

  // A reply still being generated has a (hidden) stop form; while there is one, the message
  // box's Stop button stands in the Send button's place and sends it.
  function activeStopForm() { return document.querySelector("#messages .stop-form"); }

  // Send pressed by keyboard (Enter or Space on the button: a click with no pointer): when its
  // reply starts, Stop takes Send's place, and the focus with it (it fell to the page); once
  // the reply ends it goes to the reply, as from Stop. Not for a click or a tap, nor for a
  // reply another tab started: a key pressed then would stop a reply by mistake.
  var sentByKeyboard = false;
  document.addEventListener("click", function (event) {
    var send = event.target.closest ? event.target.closest("#composer .send-button") : null;
    if (send) { sentByKeyboard = event.detail === 0; }
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    if (event.detail.elt && event.detail.elt.id === "composer" && !event.detail.successful) {
      sentByKeyboard = false;
    }
  });

  function syncComposer() {
    var composer = document.getElementById("composer");
    var stop = composer && composer.querySelector(".composer-stop");
    if (!stop) { return; }
    var send = composer.querySelector(".send-button");
    var active = document.activeElement;
    var onSend = active === send || ((!active || active === document.body) && lastFocus === send);
    var wasBusy = composer.classList.contains("busy");
    var busy = !!activeStopForm();
    composer.classList.toggle("busy", busy);
    if (busy && !wasBusy && sentByKeyboard && onSend) { stop.focus(); }
    if (busy) { sentByKeyboard = false; }
  }

  // While a reply streams the message box sends nothing (Enter; Ctrl+Enter on a touch screen,
  // where Stop has taken the Send button's place): the server would refuse it (409, "still
  // replying"), a round trip the browser logged as errors. The box keeps what is typed, and
  // the line under it says why, as the refusal did, until the reply ends. The server still
  // refuses what this tab could not know of (a reply another tab started, its socket late).
  // (The words of that refusal: BUSY in chat/views.py.)
  var STILL_REPLYING = "The assistant is still replying. Wait for it to finish, or press Stop.";
  document.addEventListener("htmx:confirm", function (event) {
    if (event.defaultPrevented || event.target.id !== "composer" || !activeStopForm()) { return; }
    event.preventDefault();
    var error = document.getElementById("composer-error");
    if (error) {
      error.textContent = STILL_REPLYING;
      error.hidden = false;
      error.setAttribute("data-until-reply-ends", "");
    }
  });

  function stopActiveReply() {
    var form = activeStopForm();
    if (form) { form.requestSubmit(); }
    return !!form;
  }

  document.addEventListener("click", function (event) {
    if (event.target.closest && event.target.closest(".composer-stop")) { stopActiveReply(); }
  });
  document.addEventListener("DOMContentLoaded", syncComposer);
  document.addEventListener("htmx:afterSettle", syncComposer);
  document.addEventListener("htmx:oobAfterSwap", function () { setTimeout(syncComposer, 0); });

  // Copy buttons: one per message (server-rendered), one per code block (added here).
  function copied(button) {
    if (button.hasAttribute("aria-label")) {  // an icon button: a tick, and its name says so
      button.setAttribute("aria-label", "Copied");
      button.classList.add("done");
      setTimeout(function () {
        button.setAttribute("aria-label", "Copy");
        button.classList.remove("done");
      }, 1500);
      return;
    }
    var label = button.textContent;
    button.textContent = "Copied";
    setTimeout(function () { button.textContent = label; }, 1500);
  }

  function copyText(text, button) {
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { copied(button); }, function () {});
    } else {
      var area = document.createElement("textarea");
      area.value = text;
      document.body.appendChild(area);
      area.select();
      try { document.execCommand("copy"); copied(button); } finally { area.remove(); }
    }
  }

  // A reply goes on the clipboard twice: as its markdown, the plain text (asked of the server:
  // an editor, a terminal, another chat get "**bold**" and "```py" as the model wrote them),
  // and as the HTML the page shows (a document or an email keep its formatting). The text
  // shown, if the browser cannot write both or the markdown cannot be had.
  function copyReply(element, url, button) {
    var text = shownText(element);
    if (!(navigator.clipboard && navigator.clipboard.write && window.ClipboardItem && window.isSecureContext)) {
      copyText(text, button);
      return;
    }
    // (signed out, the answer would be the login page: a redirect is not followed, and not ok)
    var markdown = fetch(url, { credentials: "same-origin", redirect: "manual" })
      .then(function (response) { return response.ok ? response.text() : text; }, function () { return text; })
      .then(function (source) { return new Blob([source], { type: "text/plain" }); });
    var item = new ClipboardItem({
      "text/plain": markdown,
      "text/html": new Blob([shownHtml(element)], { type: "text/html" }),
    });
    navigator.clipboard.write([item]).then(function () { copied(button); }, function () { copyText(text, button); });
  }

  // Code blocks come in a frame (`div.code-block`, with the language label) from the server;
  // a block still streaming has no copy button until it is highlighted.
  function addCodeCopyButtons(root) {
    var selector = ".markdown pre:not(.streaming-code)";
    var blocks = root.querySelectorAll ? Array.prototype.slice.call(root.querySelectorAll(selector)) : [];
    // (a block swapped in by itself is the root: a reply stored before its frame was rendered)
    if (root.matches && root.matches(selector)) { blocks.push(root); }
    Array.prototype.forEach.call(blocks, function (pre) {
      var frame = pre.parentElement;
      if (!frame.classList.contains("code-block")) {
        frame = document.createElement("div");
        frame.className = "code-block";
        pre.parentNode.insertBefore(frame, pre);
        frame.appendChild(pre);
      }
      if (frame.querySelector(".code-copy")) { return; }
      var button = document.createElement("button");
      button.type = "button";
      button.className = "code-copy";
      button.textContent = "Copy code";
      frame.appendChild(button);
    });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest(".copy-button, .code-copy") : null;
    if (!button) { return; }
    var source = button.classList.contains("code-copy")
      ? button.parentElement.querySelector("pre")
      : document.querySelector(button.getAttribute("data-copy"));
    if (!source) { return; }
    if (button.hasAttribute("data-copy-text")) {
      copyReply(source, button.getAttribute("data-copy-text"), button);
    } else {
      copyText(shownText(source), button);
    }
  });

  // The text as the page shows it, without the code blocks' language labels and copy buttons
  // (hidden for the read: `innerText` leaves out what is not displayed).
  function shownText(element) {
    element.classList.add("copying");
    var text = element.innerText;
    element.classList.remove("copying");
    return text;
  }

  // The HTML the page shows, without them.
  function shownHtml(element) {
    var copy = element.cloneNode(true);
    Array.prototype.forEach.call(copy.querySelectorAll(".code-lang, .code-copy"), function (extra) {
      extra.remove();
    });
    return copy.innerHTML;
  }

  document.addEventListener("htmx:load", function (event) { addCodeCopyButtons(event.detail.elt); });

  // A reply whose frames came before it was on the page (dropped above: the Regenerate's
  // answer drew it after its first frame) asks for itself as it stands once it is. Its own
  // request, in the reply's end, goes as htmx settles the answer: the frame that ended the
  // reply, when it came in between, replaced it unsent, and the reply showed only its last
  // words (the saved text whole) until the page was loaded again.
  document.addEventListener("htmx:load", function (event) {
    var elt = event.detail.elt;
    if (!openSocket || !elt.querySelectorAll) { return; }
    var articles = elt.matches("article[id]") ? [elt] : elt.querySelectorAll("article[id]");
    Array.prototype.forEach.call(articles, function (article) {
      var id = article.id.slice(1);
      if (framesLost[id]) {
        delete framesLost[id];
        openSocket.send(JSON.stringify({ resync: parseInt(id, 10) }));
      }
    });
  });
  document.addEventListener("DOMContentLoaded", function () { addCodeCopyButtons(document); });

  // A line end inside a paragraph between two Chinese or Japanese characters is drawn as
  // nothing once rendered (chat/markdown.py's `_softbreak`: CSS Text's segment break rule,
  // which Chromium does not apply, drawing a space in the middle of a sentence). The text
  // still being written, drawn as it comes, gets the same, so nothing moves as it settles: a
  // line end at its end waits for the character after it. (The same characters as there.)
  var JOINED_ACROSS_LINES = /[\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3100-\u312f\u31a0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\ufe30-\ufe4f\uff01-\uff60\uffe0-\uffe6\u{20000}-\u{3fffd}]/u;

  function joinsAcrossLines(character) {
    return !!character && JOINED_ACROSS_LINES.test(character);
  }

  function joinLinesOfCjk(tail) {
    // (A code block's line ends are its lines: it is not looked into.)
    var walker = document.createTreeWalker(tail, NodeFilter.SHOW_ELEMENT | NodeFilter.SHOW_TEXT, {
      acceptNode: function (node) {
        return node.nodeName === "PRE" ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT;
      },
    });
    // The texts in order, with null for an image or a line break, which is no character to
    // the server's rule either (an image another host's is drawn as a link: its text too)
    var texts = [];
    for (var node = walker.nextNode(); node; node = walker.nextNode()) {
      if (node.nodeType === Node.TEXT_NODE) {
        if (node.data) { texts.push(node.parentElement.closest(".image-link") ? null : node); }
      } else if (node.nodeName === "IMG" || node.nodeName === "BR") {
        texts.push(null);
      }
    }
    // (The first character after blanks, from the text at `i`, character `k`, on: a line
    // continued in a list item or a quote is drawn with its indentation while it streams,
    // which the render drops.)
    function nextShown(i, k) {
      for (; i < texts.length && texts[i]; i += 1, k = 0) {
        var chars = Array.from(texts[i].data);
        for (; k < chars.length; k += 1) {
          if (chars[k] !== " " && chars[k] !== "\t") { return chars[k]; }
        }
      }
      return "";
    }
    var dropBlanks = false;  // after a line end joined: the blanks that indent the next line
    texts.forEach(function (text, i) {
      // (A code span's line end is a space once rendered, as the page draws it: kept. Its
      // characters still count beside a line end outside it, as they do to the server.)
      if (!text || text.parentElement.closest("code")) { dropBlanks = false; return; }
      if (text.data.indexOf("\n") < 0 && !dropBlanks) { return; }
      var kept = "";
      var chars = Array.from(text.data);
      chars.forEach(function (character, k) {
        if (dropBlanks && (character === " " || character === "\t")) { return; }
        dropBlanks = false;
        if (character !== "\n") { kept += character; return; }
        // A blank before the line end goes too, as markdown drops it there, here or at the
        // end of the text before (two or more make a hard break: kept).
        var trimmed = kept.replace(/[ \t]+$/, "");
        var blanks = kept.length - trimmed.length;
        var before = trimmed ? Array.from(trimmed).pop() : "";
        var back = i - 1;
        for (; !before && back >= 0 && texts[back]; back -= 1) {
          var earlier = texts[back].data.replace(/[ \t]+$/, "");
          blanks += texts[back].data.length - earlier.length;
          before = earlier ? Array.from(earlier).pop() : "";
        }
        if (blanks < 2 && joinsAcrossLines(before) && joinsAcrossLines(nextShown(i, k + 1))) {
          for (var blank = back + 1; blank < i; blank += 1) {
            texts[blank].data = texts[blank].data.replace(/[ \t]+$/, "");
          }
          kept = trimmed;
          dropBlanks = true;
        } else {
          kept += character;
        }
      });
      if (kept !== text.data) { text.data = kept; }
    });
  }

  function joinLinesOfCjkEverywhere() {
    document.querySelectorAll(".streaming-tail").forEach(joinLinesOfCjk);
  }
  ["DOMContentLoaded", "htmx:wsAfterMessage", "htmx:afterSettle"].forEach(function (name) {
    document.addEventListener(name, joinLinesOfCjkEverywhere);
  });
  document.addEventListener("htmx:wsAfterMessage", afterContentChange);
  document.addEventListener("htmx:afterSettle", afterContentChange);

  // The title changes in the header (a rename, the first words, a title the model wrote,
  // from this tab or another): the browser tab and the rename box follow it.
  var shownTitle = null;
  function followTitle() {
    var heading = document.getElementById("conversation-title");
    if (!heading) { return; }
    var title = heading.textContent.trim();
    if (title === shownTitle) { return; }
    shownTitle = title;
    document.title = title + " · chatsite";
    var input = document.getElementById("rename-title");
    if (input && document.activeElement !== input) { input.value = title; }
  }
  document.addEventListener("DOMContentLoaded", function () {
    var heading = document.getElementById("conversation-title");
    shownTitle = heading ? heading.textContent.trim() : null;
  });
  ["htmx:afterSettle", "htmx:oobAfterSwap", "htmx:wsAfterMessage"].forEach(function (name) {
    document.addEventListener(name, followTitle);
  });

  // A finished reply's end (`eN`: notices, actions, stats) replaces its streaming end; the
  // rest of the reply stays as it is on the page. The reply takes the status the end carries,
  // and the finish is announced once.
  document.addEventListener("htmx:oobAfterSwap", function (event) {
    // After an outerHTML swap `target` is the element that was replaced, and until htmx
    // settles the new one still wears the old attributes: read it once the swap settled.
    var id = event.detail.target && event.detail.target.id;
    if (!id || (id.charAt(0) !== "m" && id.charAt(0) !== "e")) { return; }
    var replyId = "m" + id.slice(1);
    setTimeout(function () {
      var reply = document.getElementById(replyId);
      var end = document.getElementById("e" + id.slice(1));
      if (!reply || !reply.matches("article.message.assistant")) { return; }
      var status = end ? end.getAttribute("data-status") : reply.getAttribute("data-status");
      if (status && reply.getAttribute("data-status") !== status) {
        reply.classList.remove("status-" + reply.getAttribute("data-status"));
        reply.classList.add("status-" + status);
        reply.setAttribute("data-status", status);
      }
      var stop = document.querySelector(".composer-stop");
      var onStop = stop && (document.activeElement === stop || lastFocus === stop);
      syncComposer();
      if (status === "pending" || status === "streaming") { return; }
      var busy = document.querySelector("#composer-error[data-until-reply-ends]");
      if (busy) {
        busy.hidden = true;
        busy.textContent = "";
        busy.removeAttribute("data-until-reply-ends");
      }
      Array.prototype.forEach.call(
        document.querySelectorAll(".action-error[data-until-reply-ends]"),
        function (line) { line.remove(); }
      );
      // The focus was on the Stop button, now gone: it stays on the reply.
      var lost = !document.activeElement || document.activeElement === document.body;
      if (onStop && (lost || document.activeElement === stop)) { focusReply(reply); }
      var announcer = document.getElementById("announcer");
      // (a failed reply's error line is an alert, read as it shows: not said twice)
      if (announcer && status !== "error"
          && announcer.getAttribute("data-announced") !== replyId + status) {
        announcer.setAttribute("data-announced", replyId + status);
        // (as the reply says it: a cancelled one "Stopped.")
        announcer.textContent = status === "complete" ? "Reply finished."
          : "Reply " + (status === "cancelled" ? "stopped" : status) + ".";
      }
    }, 0);
  });
})();
