"""An example third-party OrderFlow connector (``EXAMPLE_FILE_ERP``)."""

from orderflow_example_erp.connector import FileErpConnector, create_erp, order_count

__all__ = ["FileErpConnector", "create_erp", "order_count"]
