// Swagger UI on this API's own document. The API key the run inspector keeps for this tab
// (sessionStorage) is sent with "Try it out" requests, unless one is given in Authorize.
"use strict";
(function () {
  const KEY = "refluxo.apiKey";
  window.SwaggerUIBundle({
    url: new URL("openapi.json", document.baseURI).href,
    dom_id: "#swagger",
    deepLinking: true,
    validatorUrl: null,
    requestInterceptor: function (request) {
      const key = window.sessionStorage.getItem(KEY);
      const headers = request.headers || {};
      if (key && !headers["X-API-Key"] && !headers.Authorization) {
        headers.Authorization = "Bearer " + key;
      }
      request.headers = headers;
      return request;
    },
  });
})();
