"""OrderFlow's conformance kit: the test suite every ERP connector must pass.

Third-party connector packages run it with a few lines of pytest (see
:mod:`orderflow_conformance.connector_contract` and ``examples/``)::

    from orderflow_conformance import ConnectorContract

    class TestMyErp(ConnectorContract):
        connector_type = "MY_ERP"
        secret_field_names = frozenset({"api_key"})
        ...  # fixtures: valid_config, invalid_config, wrong_credentials_config, count_documents

Needs pytest (``pip install 'orderflow-erp-push[conformance]'``).
"""

import pytest

# Plain asserts in the suite explain their failures like those in test modules.
pytest.register_assert_rewrite("orderflow_conformance.connector_contract")

from orderflow_conformance.connector_contract import *  # noqa: E402, F403
from orderflow_conformance.connector_contract import __all__ as __all__  # noqa: E402
