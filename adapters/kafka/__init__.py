"""Kafka adapter layer of the push pipeline (confluent-kafka).

* :mod:`~adapters.kafka.topics` -- topic names from one prefix; idempotent creation;
* :mod:`~adapters.kafka.headers` -- the standard headers: build, parse, bounded error text;
* :mod:`~adapters.kafka.config` -- producer/consumer/admin configs carrying the guarantees;
* :mod:`~adapters.kafka.producer` -- ``EventProducer`` with typed delivery reports;
* :mod:`~adapters.kafka.consumer` -- ``EventConsumer`` with typed messages and stored offsets;
* :mod:`~adapters.kafka.logs` -- error callback and log filter that do not spam;
* :mod:`~adapters.kafka.errors` -- the exception tree.

Importing this package connects to nothing; confluent_kafka is imported lazily.
"""

from adapters.kafka.config import (
    CONSUMER_GUARANTEES,
    PRODUCER_GUARANTEES,
    admin_config,
    consumer_config,
    producer_config,
)
from adapters.kafka.consumer import ConsumedMessage, EventConsumer, Partition
from adapters.kafka.errors import (
    ConsumerError,
    HeaderError,
    InvalidHeaderError,
    KafkaAdapterError,
    KafkaClientError,
    KafkaErrorInfo,
    MissingHeaderError,
    ProduceError,
    ProducerQueueFullError,
    TopicNameError,
    TopicPartitionsError,
    TopicSetupError,
)
from adapters.kafka.headers import (
    FAILURE_HEADERS,
    REQUIRED_HEADERS,
    EventHeaders,
    FailureInfo,
    bounded_error_message,
    build_failure_headers,
    build_headers,
    parse_failure_headers,
    parse_headers,
    replace_failure_headers,
)
from adapters.kafka.logs import ErrorReporter, RateLimitFilter
from adapters.kafka.producer import DeliveryReport, EventProducer
from adapters.kafka.topics import EnsureTopicsResult, TopicNames, ensure_topics

__all__ = [
    "CONSUMER_GUARANTEES",
    "FAILURE_HEADERS",
    "PRODUCER_GUARANTEES",
    "REQUIRED_HEADERS",
    "ConsumedMessage",
    "ConsumerError",
    "DeliveryReport",
    "EnsureTopicsResult",
    "ErrorReporter",
    "EventConsumer",
    "EventHeaders",
    "EventProducer",
    "FailureInfo",
    "HeaderError",
    "InvalidHeaderError",
    "KafkaAdapterError",
    "KafkaClientError",
    "KafkaErrorInfo",
    "MissingHeaderError",
    "Partition",
    "ProduceError",
    "ProducerQueueFullError",
    "RateLimitFilter",
    "TopicNameError",
    "TopicNames",
    "TopicPartitionsError",
    "TopicSetupError",
    "admin_config",
    "bounded_error_message",
    "build_failure_headers",
    "build_headers",
    "consumer_config",
    "ensure_topics",
    "parse_failure_headers",
    "parse_headers",
    "producer_config",
    "replace_failure_headers",
]
