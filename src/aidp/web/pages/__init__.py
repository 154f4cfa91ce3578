"""The dashboard's pages: one module per page (or family of pages), each exporting ``router``
(an :class:`fastapi.APIRouter`); :data:`aidp.web.PAGES` lists the modules
:func:`aidp.web.mount` includes."""
