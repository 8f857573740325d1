"""A Device API v2 device built on Microsoft's Azure IoT device SDK for
Python (azure-iot-device), for testing with dmconf.

It connects with a connection string whose GatewayHostName points at the
broker dmconf started (and trusts dmconf's CA), exactly as a device in the
field connects to IoT Hub. dmconf's hooks reach it through two files in
the system's temporary folder: the `perform` hook writes a request to
`<device>.perform.json`, which the device sends; the device writes every
cloud-to-device message it receives, decoded by the SDK, to
`<device>.received.json`, which the `received` hook prints. The device
removes its files when it stops.

Environment (set by dmconf): DMCONF_MQTT_URL, DMCONF_MQTT_CA,
DMCONF_DEVICE_ID.
"""

import base64
import gzip
import json
import os
import signal
import sys
import tempfile
import time
import uuid
import zlib
from urllib.parse import urlparse

from azure.iot.device import IoTHubDeviceClient, Message

device_id = os.environ["DMCONF_DEVICE_ID"]
spool = os.path.join(tempfile.gettempdir(), device_id)
broker = urlparse(os.environ["DMCONF_MQTT_URL"])
ca = open(os.environ["DMCONF_MQTT_CA"]).read()
key = base64.b64encode(b"any key: the local hub does not check it").decode()
connection_string = (
    f"HostName=dmconf-hub.azure-devices.net;DeviceId={device_id};"
    f"SharedAccessKey={key};GatewayHostName={broker.hostname}"
)
# The SDK always connects to port 8883: the profile asks dmconf to
# publish its TLS listener there.
client = IoTHubDeviceClient.create_from_connection_string(
    connection_string, server_verification_cert=ca
)
received = []


def on_message(message):
    body = message.data
    if message.content_encoding == "gzip":
        body = gzip.decompress(body)
    elif message.content_encoding == "deflate":
        body = zlib.decompress(body)
    try:
        body = json.loads(body)
    except ValueError:
        body = None
    received.append({"headers": message.custom_properties, "body": body})
    with open(f"{spool}.received.json.tmp", "w") as f:
        json.dump({"count": len(received), **received[-1]}, f)
    os.rename(f"{spool}.received.json.tmp", f"{spool}.received.json")


def perform(request):
    """Sends a request as the hook describes it; refuses one over the
    device-to-cloud limit, as a device must."""
    action = request["action"]
    body = request.get("body") or {
        "model": "abb.ability.device",
        "type": "abb.ability.device.dmconf@1",
        "properties": {"serialNumber": {"value": "$fill"}},
    }
    headers = {"msgType": "action", "action": action, "version": "2",
               "correlationId": request.get("correlationId") or str(uuid.uuid4())}
    for k in ("ack", "context", "target"):
        if request.get(k) is not None:
            headers[k] = str(request[k])
    data = json.dumps(body, separators=(",", ":"))
    fill = request.get("fill")
    if fill:
        # Size as IoT Hub counts it: body + system property values +
        # application property names and values.
        base = (len(data.replace('"$fill"', '""').encode())
                + len("application/json") + len("utf-8")
                + sum(len(k) + len(v.encode()) for k, v in headers.items()))
        data = data.replace('"$fill"', '"' + "x" * (int(fill) - base) + '"')
        if int(fill) > 256 * 1024:
            return {"sent": False, "reason": f"{fill} bytes is over the device-to-cloud limit"}
    payload = data.encode()
    encoding = request.get("encoding") or "utf-8"
    if encoding == "gzip":
        payload = gzip.compress(payload)
    elif encoding == "deflate":
        payload = zlib.compress(payload)
    message = Message(payload, content_encoding=encoding, content_type="application/json")
    message.custom_properties = headers
    try:
        client.send_message(message)
    except ValueError as e:
        # The SDK's own size check (an estimate larger than IoT Hub's
        # count) refuses messages near the limit.
        return {"sent": False, "reason": str(e)}
    return {"sent": True, "correlationId": headers["correlationId"]}


def stop(*_):
    client.shutdown()
    for suffix in ("received.json", "perform.json", "perform.answer.json"):
        try:
            os.remove(f"{spool}.{suffix}")
        except FileNotFoundError:
            pass
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
client.on_message_received = on_message
client.connect()
time.sleep(0.5)  # let the SDK finish subscribing to cloud-to-device messages
print(f"device {device_id} connected", flush=True)
inbox = f"{spool}.perform.json"
while True:
    if os.path.exists(inbox):
        with open(inbox) as f:
            request = json.load(f)
        os.remove(inbox)
        answer = perform(request)
        with open(f"{spool}.perform.answer.json.tmp", "w") as f:
            json.dump(answer, f)
        os.rename(f"{spool}.perform.answer.json.tmp", f"{spool}.perform.answer.json")
    time.sleep(0.05)
