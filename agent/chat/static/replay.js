// The replay page's player: plays a call's recording, an asciinema v2 cast written by
// agent/audit/recorder.py, into a <pre>. Ours rather than asciinema-player (why: see
// agent/chat/routes/replay.py). What it understands is what commands run without a terminal
// print: text, \r and \b, tabs, colours and bold (SGR), erasing a line, cursor moves
// along a line; other escape sequences are skipped. stderr (the cast's "stderr"/"stdout"
// markers) shows in its own colour; a "cut: ..." marker is said under the output.
(function () {
  "use strict";
  var IDLE = 2;            // seconds: a longer pause plays as this long
  var MAX_LINES = 20000;   // lines kept on screen; older ones scroll away, a quarter at a time

  function parse(text) {
    var lines = text.split("\n");  // only "\n" ends a line: JSON may hold U+2028 raw
    var events = [];
    var real = 0, shift = 0;
    for (var i = 1; i < lines.length; i++) {
      if (!lines[i]) { continue; }
      var e = JSON.parse(lines[i]);
      if (e[0] - real > IDLE) { shift += e[0] - real - IDLE; }
      real = Math.max(real, e[0]);
      events.push({t: real - shift, code: e[1], data: String(e[2])});
    }
    JSON.parse(lines[0]);  // the header: a cast that is not JSON fails here, not later
    return {events: events, duration: events.length ? events[events.length - 1].t : 0};
  }

  // -- the screen: lines of cells, each line two arrays: characters and their classes ---
  function Screen(pre) {
    this.pre = pre;
    this.reset();
  }
  Screen.prototype.reset = function () {
    this.lines = [newLine()];
    this.nodes = [];
    this.dirty = {};
    this.row = 0;
    this.col = 0;
    this.dropped = 0;  // lines that scrolled away
    this.fg = 0;       // 0: the default colour, else 1-15
    this.bold = false;
    this.stderr = false;
    this.cls = "";     // the classes of what is written now (restyle)
    this.esc = "";     // an escape sequence being read
    this.pre.textContent = "";
  };
  Screen.prototype.restyle = function () {
    var names = [];
    if (this.stderr) { names.push("e"); }
    if (this.fg) { names.push("c" + this.fg); }
    if (this.bold) { names.push("b"); }
    this.cls = names.join(" ");
  };
  Screen.prototype.stream = function (stderr) {
    this.stderr = stderr;
    this.restyle();
  };
  Screen.prototype.touch = function () { this.dirty[this.row] = true; };
  function newLine() { return {c: [], k: []}; }
  Screen.prototype.put = function (ch) {
    var line = this.lines[this.row];
    while (line.c.length < this.col) { line.c.push(" "); line.k.push(""); }
    line.c[this.col] = ch;
    line.k[this.col] = this.cls;
    this.col++;
    this.touch();
  };
  Screen.prototype.down = function () {
    this.row++;
    if (this.row >= this.lines.length) { this.lines.push(newLine()); }
    if (this.lines.length > MAX_LINES * 1.25) {  // in one go: shifting line by line is quadratic
      var drop = this.lines.length - MAX_LINES;
      this.lines.splice(0, drop);
      this.nodes.splice(0, drop).forEach(function (node) { node.remove(); });
      this.row -= drop;
      this.dropped += drop;
      var moved = {};
      for (var r in this.dirty) { if (r >= drop) { moved[r - drop] = true; } }
      this.dirty = moved;
    }
  };
  Screen.prototype.csi = function (params, final) {
    var n = params.split(";").map(function (p) { return parseInt(p, 10) || 0; });
    var line = this.lines[this.row];
    if (final === "m") {
      for (var i = 0; i < n.length; i++) {
        var p = n[i];
        if (p === 0) { this.fg = 0; this.bold = false; }
        else if (p === 1) { this.bold = true; }
        else if (p === 22) { this.bold = false; }
        else if (p >= 30 && p <= 37) { this.fg = p - 30; }
        else if (p >= 90 && p <= 97) { this.fg = p - 90 + 8; }
        else if (p === 39) { this.fg = 0; }
        else if (p === 38 || p === 48) { i += n[i + 1] === 5 ? 2 : 4; }  // 256 / true colour
      }
      this.restyle();
    } else if (final === "K") {
      if (n[0] === 0) {
        line.c.length = Math.min(line.c.length, this.col);
        line.k.length = line.c.length;
      } else if (n[0] === 1) {
        for (var k = 0; k < Math.min(this.col + 1, line.c.length); k++) { line.c[k] = " "; line.k[k] = ""; }
      } else { line.c.length = 0; line.k.length = 0; }
      this.touch();
    } else if (final === "C") { this.col += n[0] || 1; }
    else if (final === "D") { this.col = Math.max(0, this.col - (n[0] || 1)); }
    else if (final === "G") { this.col = Math.max(0, (n[0] || 1) - 1); }
    else if (final === "J" && n[0] >= 2) {
      var err = this.stderr;
      this.reset();
      this.stream(err);
    }
  };
  Screen.prototype.write = function (text) {
    for (var i = 0; i < text.length; i++) {
      var ch = text[i];
      if (this.esc) {
        this.esc += ch;
        var kind = this.esc[1];
        if (kind === "[" ? /[@-~]/.test(ch) && this.esc.length > 2
            : kind === "]" ? ch === "\x07" || this.esc.slice(-2) === "\x1b\\"
            : this.esc.length === ("()".indexOf(kind) >= 0 ? 3 : 2)) {
          if (kind === "[") { this.csi(this.esc.slice(2, -1).replace(/^[?>=]/, ""), ch); }
          this.esc = "";
        } else if (this.esc.length > 256) { this.esc = ""; }  // not an escape after all
        continue;
      }
      if (ch === "\x1b") { this.esc = ch; }
      else if (ch === "\r") { this.col = 0; }
      else if (ch === "\n") { this.down(); }
      else if (ch === "\b") { this.col = Math.max(0, this.col - 1); }
      else if (ch === "\t") { do { this.put(" "); } while (this.col % 8); }
      else if (ch >= " " && ch !== "\x7f") { this.put(ch); }
    }
  };
  Screen.prototype.flush = function () {
    for (var r in this.dirty) {
      var row = Number(r);
      while (this.nodes.length <= row) {
        var node = document.createElement("span");
        node.className = "line";
        this.pre.appendChild(node);
        this.nodes.push(node);
      }
      var target = this.nodes[row];
      target.textContent = "";
      var line = this.lines[row] || newLine();
      var start = 0;
      for (var c = 1; c <= line.c.length; c++) {
        if (c < line.c.length && line.k[c] === line.k[start]) { continue; }
        var span = document.createElement("span");
        if (line.k[start]) { span.className = line.k[start]; }
        span.textContent = line.c.slice(start, c).join("");
        target.appendChild(span);
        start = c;
      }
      target.appendChild(document.createTextNode("\n"));
    }
    // Rows below the cursor that a clear removed.
    while (this.nodes.length > this.lines.length) { this.nodes.pop().remove(); }
    this.dirty = {};
  };

  // -- the player: controls, timing ----------------------------------------------------
  function clock(seconds) {
    var tenths = Math.floor(seconds * 10);
    var s = Math.floor(tenths / 10);
    return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0") + "." + tenths % 10;
  }

  function Player(root) {
    this.root = root;
    this.screen = new Screen(root.querySelector("[data-screen]"));
    this.button = root.querySelector("[data-play]");
    this.seekInput = root.querySelector("[data-seek]");
    this.timeLabel = root.querySelector("[data-time]");
    this.speedInput = root.querySelector("[data-speed]");
    this.cutNote = root.querySelector("[data-cut]");
    this.droppedNote = root.querySelector("[data-dropped]");
    this.cast = null;
    this.next = 0;       // the first event not yet on screen
    this.time = 0;
    this.playing = false;
    this.base = 0;
  }
  Player.prototype.apply = function (until) {
    var events = this.cast.events;
    while (this.next < events.length && events[this.next].t <= until) {
      var e = events[this.next++];
      if (e.code === "o") { this.screen.write(e.data); }
      else if (e.code === "m" && (e.data === "stderr" || e.data === "stdout")) {
        this.screen.stream(e.data === "stderr");
      } else if (e.code === "m" && e.data.indexOf("cut: ") === 0) {
        this.cutNote.textContent = "The recording stopped early: " + e.data.slice(5) + ".";
        this.cutNote.hidden = false;
      }
    }
    this.screen.flush();
    if (this.screen.dropped) {
      this.droppedNote.textContent = "The first " + this.screen.dropped + " lines scrolled " +
        "away; the download below, or tailnet-agent audit show, has them all.";
      this.droppedNote.hidden = false;
    }
  };
  Player.prototype.seek = function (t) {
    if (t < this.time || this.next === 0) {
      this.screen.reset();
      this.next = 0;
      this.cutNote.hidden = true;
      this.droppedNote.hidden = true;
    }
    this.time = t;
    this.apply(t);
    this.show();
  };
  Player.prototype.show = function () {
    var d = this.cast.duration;
    this.seekInput.value = String(this.time);
    this.seekInput.setAttribute("aria-valuetext", clock(this.time) + " of " + clock(d));
    this.timeLabel.textContent = clock(this.time) + " / " + clock(d);
    this.button.textContent = this.playing ? "Pause" : this.time >= d ? "Replay" : "Play";
  };
  Player.prototype.tick = function () {
    if (!this.playing) { return; }
    var t = Math.min(this.cast.duration,
                     (performance.now() - this.base) / 1000 * Number(this.speedInput.value));
    this.time = t;
    this.apply(t);
    if (t >= this.cast.duration) { this.playing = false; }
    this.show();
    var screen = this.screen.pre;
    screen.scrollTop = screen.scrollHeight;
    if (this.playing) { requestAnimationFrame(this.tick.bind(this)); }
  };
  Player.prototype.play = function () {
    if (this.time >= this.cast.duration) { this.seek(0); }
    this.playing = true;
    this.base = performance.now() - this.time * 1000 / Number(this.speedInput.value);
    requestAnimationFrame(this.tick.bind(this));
  };
  Player.prototype.pause = function () {
    this.playing = false;
    this.show();
  };
  Player.prototype.start = function (cast) {
    var self = this;
    this.cast = cast;
    this.seekInput.max = String(cast.duration);
    this.screen.pre.textContent = "";
    this.seek(cast.duration);  // the whole output first
    this.button.disabled = false;
    this.seekInput.disabled = false;
    this.button.addEventListener("click", function () {
      if (self.playing) { self.pause(); } else { self.play(); }
    });
    this.seekInput.addEventListener("input", function () {
      self.seek(Number(self.seekInput.value));
      if (self.playing) { self.base = performance.now() - self.time * 1000 / Number(self.speedInput.value); }
    });
    this.speedInput.addEventListener("change", function () {
      if (self.playing) { self.base = performance.now() - self.time * 1000 / Number(self.speedInput.value); }
    });
    this.root.dataset.ready = "true";
  };

  function load(root) {
    var player = new Player(root);
    fetch(root.dataset.cast, {credentials: "same-origin"})
      .then(function (response) {
        if (!response.ok) {
          return response.text().then(function (text) { throw new Error(text.trim()); });
        }
        return response.text();
      })
      .then(function (text) { player.start(parse(text)); })
      .catch(function (error) {
        var pre = root.querySelector("[data-screen]");
        pre.textContent = "";
        var message = document.createElement("p");
        message.className = "msg error";
        message.setAttribute("role", "alert");
        message.textContent = "The recording cannot be played: " + error.message;
        root.insertBefore(message, pre);
      });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".player[data-cast]").forEach(load);
  });
})();
