"""Route modules of the API; each exports ``router`` (see :data:`aidp.api.server.ROUTERS`)."""
