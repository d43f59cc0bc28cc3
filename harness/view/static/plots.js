// harness view: draws each figure.plot from the Vega-Lite spec in its <script type="application/json">
// with the vendored vega-embed (static/vendor/); nothing is fetched from the network.
"use strict";
document.querySelectorAll("figure.plot").forEach(function (figure) {
  var target = figure.querySelector(".vega-plot");
  var spec = JSON.parse(figure.querySelector("script.plot-spec").textContent);
  vegaEmbed(target, spec, { actions: false, renderer: "svg" })
    .then(function () { figure.dataset.rendered = "yes"; })
    .catch(function (error) {
      figure.dataset.rendered = "failed";
      target.textContent = "this plot could not be drawn: " + error;
    });
});
