import type { Transport, TransportSendOptions } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { JSONRPCMessage, MessageExtraInfo } from '@modelcontextprotocol/sdk/types.js';

/**
 * Wraps a transport so the gateway can read the client's first message (initialize) before the
 * downstream Server exists — the Server's capabilities mirror upstream servers that can only be
 * connected once the client's own capabilities are known. Messages are held until the Server starts it.
 */
export class HeldTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage, extra?: MessageExtraInfo) => void;
  private readonly held: { message: JSONRPCMessage; extra?: MessageExtraInfo }[] = [];
  private released = false;

  constructor(private readonly inner: Transport) {}

  get sessionId(): string | undefined {
    return this.inner.sessionId;
  }

  /** Starts the inner transport and resolves with the first message the client sends. */
  async firstMessage(): Promise<JSONRPCMessage> {
    const first = new Promise<JSONRPCMessage>((resolve, reject) => {
      this.inner.onmessage = (message, extra) => {
        if (this.released && this.onmessage) this.onmessage(message, extra);
        else {
          this.held.push({ message, extra });
          if (this.held.length === 1) resolve(message);
        }
      };
      this.inner.onclose = () => {
        reject(new Error('the client closed the connection before initializing'));
        this.onclose?.();
      };
      this.inner.onerror = (error) => this.onerror?.(error);
    });
    await this.inner.start();
    return first;
  }

  /** Called by the Server's connect(): delivers the held messages, then passes everything through. */
  async start(): Promise<void> {
    this.released = true;
    queueMicrotask(() => {
      for (const { message, extra } of this.held.splice(0)) this.onmessage?.(message, extra);
    });
  }

  send(message: JSONRPCMessage, options?: TransportSendOptions): Promise<void> {
    return this.inner.send(message, options);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
