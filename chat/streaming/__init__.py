"""The stream engine: from a claimed reply to the model's stream, and its deltas onto the channel
layer. The layers, top to bottom; each imports only the ones below it.

Upper half, on Django and Channels:

    worker          runs the streaming consumer, in the web process or as `runworker`; recovery
    consumer        the background streaming consumer on the `chat-stream` channel
    generation      one reply, from request to saved message (and the HTML its frames carry)
    upstream        settings -> the shared httpx client (network or demo) and the stream client
    channel_layers  the channel layers the settings pick: in process, or Redis riding out restarts
    dispatch        how both consumers, this one and the WebSocket one, take channel-layer events

Lower half, without Django (a test imports it alone and finds no Django loaded):

    coalescer       many small deltas into few frames, at most one a window
    client          the chat-completions client: auth, timeouts, retries around one httpx client
    transport       the network transport under that httpx client (aiohttp's engine)
    completion      a reply as its stream chunks build it, in every shape servers send
    sse             Server-Sent Events decoding
    errors          the upstream error tree
    demo            the built-in demo model, as an httpx transport
    redis_wire      one plain Redis connection for the channel layer's per-frame commands
    redis_connections  redis-py's connections for the layer's pools: one reset while idle reopens
    liveness        a worker's id, and whether one named in a lease is known to have died

Left in `chat/`, as they belong to the app rather than to the engine: `events` (the one module
that sends real-time events; views and services send through it too), `outages` (riding out
Redis and the database, for the whole app), `progressive`, `markdown` and `fragments` (what a
page shows, streamed or not), `titles` and `tools` (features a generation uses), `services`
and `selectors` (the app's writes and reads), `consumers` (the WebSocket consumer, which relays
what the engine sends) and `model_catalog` (the models a page offers). The upper half calls
these; the lower half knows none of them.
"""
