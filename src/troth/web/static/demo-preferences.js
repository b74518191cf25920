// Demo preferences feature: remembers the chosen language.
(function () {
  document.cookie = "lang=" + (document.documentElement.lang || "en") + "; max-age=31536000; path=/; SameSite=Lax";
  (window.__trothDemo = window.__trothDemo || {}).preferences = true;
})();
