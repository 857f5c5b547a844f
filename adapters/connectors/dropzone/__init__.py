"""The parts of the DROPZONE_JSON_V1 connector: text rules, paths, document, config.

The connector itself is ``adapters.connectors.dropzone_json_v1`` (its entry point),
which re-exports the public names of these modules.
"""
