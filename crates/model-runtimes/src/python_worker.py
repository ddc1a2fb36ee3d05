"""Loopline's Python model worker: loads one MLflow model with mlflow.pyfunc and answers prediction requests
from the Loopline server over a Unix socket. The server never unpickles anything itself; this process does,
in the model's own Python environment.

Wire format, both directions: a 4-byte little-endian length, then the payload.
  request:  an Arrow IPC stream holding one record batch (one column per input; a 2-D tensor is a
            fixed-size-list column)
  response: one status byte (0 = ok, 1 = the input was refused, 2 = the model failed) followed by an Arrow
            IPC stream (ok) or a UTF-8 message.

usage: python python_worker.py <model directory> <socket path>
"""

import os
import resource
import socket
import struct
import sys
import traceback


def limit_resources():
    """Applies the server's limits before any model code runs: memory (data segment, which covers the heap and
    anonymous mappings), CPU seconds and open files. Hard limits too, so the model cannot raise them again."""
    for variable, kind in (
        ("LOOPLINE_WORKER_MEMORY_BYTES", resource.RLIMIT_DATA),
        ("LOOPLINE_WORKER_CPU_SECONDS", resource.RLIMIT_CPU),
        ("LOOPLINE_WORKER_OPEN_FILES", resource.RLIMIT_NOFILE),
    ):
        value = int(os.environ.get(variable, "0"))
        if value > 0:
            _, hard = resource.getrlimit(kind)
            if hard != resource.RLIM_INFINITY:
                value = min(value, hard)
            resource.setrlimit(kind, (value, value))


limit_resources()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402


def read_exactly(connection, size):
    chunks = []
    while size:
        chunk = connection.recv(min(size, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def send(connection, status, payload):
    connection.sendall(struct.pack("<I", len(payload) + 1) + bytes([status]) + payload)


def to_input(batch):
    """One fixed-size-list column is a matrix (a tensor input); otherwise the columns are a DataFrame."""
    if batch.num_columns == 1 and pa.types.is_fixed_size_list(batch.schema.field(0).type):
        column = batch.column(0)
        width = column.type.list_size
        return column.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)
    return batch.to_pandas()


def to_table(predictions, rows):
    """Predictions as columns: a DataFrame column by column, a 1-D array as `prediction`, a 2-D array as one
    fixed-size-list column, a dict of arrays name by name."""
    if isinstance(predictions, pd.DataFrame):
        items = [(str(name), predictions[name].to_numpy()) for name in predictions.columns]
    elif isinstance(predictions, pd.Series):
        items = [(str(predictions.name or "prediction"), predictions.to_numpy())]
    elif isinstance(predictions, dict):
        items = [(str(name), np.asarray(value)) for name, value in predictions.items()]
    else:
        items = [("prediction", np.asarray(predictions))]
    arrays, names = [], []
    for name, values in items:
        if values.ndim == 0:
            values = np.repeat(values, rows)
        if values.ndim == 2:
            flat = pa.array(values.reshape(-1))
            arrays.append(pa.FixedSizeListArray.from_arrays(flat, values.shape[1]))
        elif values.ndim == 1:
            if values.dtype == object:
                values = values.astype(str)
            arrays.append(pa.array(values))
        else:
            raise ValueError(f"output {name!r} has {values.ndim} dimensions; at most 2 can be returned")
        names.append(name)
    return pa.RecordBatch.from_arrays(arrays, names=names)


def main():
    model_directory, socket_path = sys.argv[1], sys.argv[2]
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    model = mlflow.pyfunc.load_model(model_directory)
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.connect(socket_path)
    while True:
        try:
            (length,) = struct.unpack("<I", read_exactly(connection, 4))
            payload = read_exactly(connection, length)
        except EOFError:
            return
        batch = pa.ipc.open_stream(payload).read_next_batch()
        try:
            predictions = model.predict(to_input(batch))
        except (MlflowException, ValueError, TypeError, KeyError) as error:
            send(connection, 1, f"{type(error).__name__}: {error}".encode())
            continue
        except Exception:  # the model itself failed
            send(connection, 2, traceback.format_exc(limit=5).encode())
            continue
        try:
            table = to_table(predictions, batch.num_rows)
        except Exception as error:
            send(connection, 2, f"the predictions cannot be returned: {error}".encode())
            continue
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_batch(table)
        send(connection, 0, sink.getvalue().to_pybytes())


if __name__ == "__main__":
    main()
