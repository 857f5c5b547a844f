"""ERP connector adapters: implementations of ``domain.ports.ERPConnectorPort``."""
