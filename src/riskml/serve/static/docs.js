// Swagger UI on the service's own OpenAPI document (no inline script: the CSP forbids it).
window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
