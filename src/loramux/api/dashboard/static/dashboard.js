// loramux dashboard: draws the live traffic chart (requests per second by route) on the
// overview page from /ui/api/traffic, every 2 s. No framework, no build step.
(function () {
  "use strict";
  var COLORS = ["#1a73e8", "#e8710a", "#188038", "#d93025", "#9334e6", "#12b5cb", "#b06000", "#5f6368"];

  function draw(canvas, legend, data) {
    var ctx = canvas.getContext("2d");
    var w = canvas.width, h = canvas.height, pad = 36;
    ctx.clearRect(0, 0, w, h);
    var names = Object.keys(data.series).sort();
    var max = 0.5;
    names.forEach(function (n) {
      data.series[n].forEach(function (v) { if (v > max) { max = v; } });
    });
    ctx.strokeStyle = "#ccc";
    ctx.fillStyle = "#555";
    ctx.font = "12px sans-serif";
    ctx.lineWidth = 1;
    for (var i = 0; i <= 4; i++) {
      var y = h - pad - (h - 2 * pad) * i / 4;
      ctx.beginPath(); ctx.moveTo(pad, y); ctx.lineTo(w - 8, y); ctx.stroke();
      ctx.fillText((max * i / 4).toFixed(2), 2, y + 4);
    }
    ctx.fillText("-" + data.window_s + " s", pad, h - 8);
    ctx.fillText("now (req/s per " + data.step_s + " s)", w - 150, h - 8);
    legend.textContent = "";
    names.forEach(function (name, k) {
      var values = data.series[name], n = values.length;
      var color = COLORS[k % COLORS.length];
      ctx.strokeStyle = color;
      ctx.lineWidth = 2;
      ctx.beginPath();
      values.forEach(function (v, j) {
        var x = pad + (w - pad - 8) * j / Math.max(1, n - 1);
        var y = h - pad - (h - 2 * pad) * v / max;
        if (j === 0) { ctx.moveTo(x, y); } else { ctx.lineTo(x, y); }
      });
      ctx.stroke();
      var item = document.createElement("span");
      item.className = "series";
      item.setAttribute("data-series", name);
      var swatch = document.createElement("i");
      swatch.style.background = color;
      item.appendChild(swatch);
      item.appendChild(document.createTextNode(name));
      legend.appendChild(item);
    });
    if (!names.length) { legend.textContent = "no requests in the window yet"; }
  }

  function poll(canvas, legend) {
    fetch(canvas.getAttribute("data-src"), { credentials: "same-origin" })
      .then(function (r) {
        if (r.status === 401) { window.location = "/ui/login"; throw new Error("logged out"); }
        return r.json();
      })
      .then(function (data) { draw(canvas, legend, data); canvas.setAttribute("data-updated", String(data.now)); })
      .catch(function () { /* the next poll tries again */ });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var canvas = document.getElementById("traffic");
    var legend = document.getElementById("traffic-legend");
    if (!canvas || !legend) { return; }
    poll(canvas, legend);
    window.setInterval(function () { poll(canvas, legend); }, 2000);
  });
})();
