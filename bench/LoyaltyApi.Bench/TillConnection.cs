using System.Buffers.Text;
using System.Net.Sockets;
using System.Text;

namespace LoyaltyApi.Bench;

/// <summary>
/// One till's keep-alive HTTP/1.1 connection, written and read with blocking calls. The driver shares
/// two cores with the service and the database, and pgbench's client is lean C: HttpClient cost this
/// machine about 0.27 ms of CPU per checkout and a pool thread's wake-up per response. Here a request is
/// one send, and its response wakes the thread that waits for it, and nothing else.
/// </summary>
public sealed class TillConnection : IDisposable
{
    private readonly Socket _socket;
    private readonly string _host;
    private byte[] _out = new byte[4096];
    private byte[] _in = new byte[16384];
    private int _inStart, _inEnd;

    public TillConnection(Uri baseUrl)
    {
        _socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true, ReceiveTimeout = 30_000 };
        _socket.Connect(baseUrl.Host, baseUrl.Port);
        _host = baseUrl.Authority;
    }

    /// <summary>False once the service closed the connection: the till opens a new one.</summary>
    public bool Open { get; private set; } = true;

    public void Send(string method, string path, string apiKey, string? idempotencyKey, string? body)
    {
        var head = new StringBuilder(256)
            .Append(method).Append(' ').Append(path).Append(" HTTP/1.1\r\nHost: ").Append(_host)
            .Append("\r\nX-Api-Key: ").Append(apiKey).Append("\r\n");
        if (idempotencyKey is not null) head.Append("Idempotency-Key: ").Append(idempotencyKey).Append("\r\n");
        if (body is not null)
        {
            head.Append("Content-Type: application/json; charset=utf-8\r\nContent-Length: ").Append(Encoding.UTF8.GetByteCount(body)).Append("\r\n");
        }
        head.Append("\r\n");
        if (body is not null) head.Append(body);
        var request = head.ToString();
        var length = Encoding.UTF8.GetByteCount(request);
        if (_out.Length < length) _out = new byte[length * 2];
        Encoding.UTF8.GetBytes(request, _out);
        for (var sent = 0; sent < length;) sent += _socket.Send(_out, sent, length - sent, SocketFlags.None);
    }

    /// <summary>Blocks until the next response has arrived in full: its status and body.</summary>
    public (int Status, string Body) Receive()
    {
        int headerEnd;
        while ((headerEnd = _in.AsSpan(_inStart, _inEnd - _inStart).IndexOf("\r\n\r\n"u8)) < 0) Fill();
        var head = Encoding.ASCII.GetString(_in, _inStart, headerEnd);
        _inStart += headerEnd + 4;
        var lines = head.Split("\r\n");
        var status = int.Parse(lines[0].AsSpan(9, 3));
        var contentLength = -1;
        var chunked = false;
        foreach (var line in lines.AsSpan(1))
        {
            var colon = line.IndexOf(':');
            if (colon <= 0) continue;
            var name = line.AsSpan(0, colon);
            var value = line.AsSpan(colon + 1).Trim();
            if (name.Equals("Content-Length", StringComparison.OrdinalIgnoreCase)) contentLength = int.Parse(value);
            else if (name.Equals("Transfer-Encoding", StringComparison.OrdinalIgnoreCase)) chunked = value.Contains("chunked", StringComparison.OrdinalIgnoreCase);
            else if (name.Equals("Connection", StringComparison.OrdinalIgnoreCase) && value.Equals("close", StringComparison.OrdinalIgnoreCase)) Open = false;
        }
        if (!chunked) return (status, contentLength > 0 ? Encoding.UTF8.GetString(Take(contentLength)) : "");

        var body = new List<byte>(512);
        while (true)
        {
            var size = (int)ParseHex(ReadLine());
            if (size == 0)
            {
                while (ReadLine().Length > 0) { } // trailers, then the empty line that ends the response
                return (status, Encoding.UTF8.GetString(body.ToArray()));
            }
            body.AddRange(Take(size));
            ReadLine();
        }
    }

    private static long ParseHex(ReadOnlySpan<byte> line)
    {
        var end = line.IndexOf((byte)';');
        if (end >= 0) line = line[..end];
        return Utf8Parser.TryParse(line, out long value, out _, 'x') ? value : throw new IOException("Bad chunk size.");
    }

    private ReadOnlySpan<byte> ReadLine()
    {
        int end;
        while ((end = _in.AsSpan(_inStart, _inEnd - _inStart).IndexOf("\r\n"u8)) < 0) Fill();
        var line = _in.AsSpan(_inStart, end);
        _inStart += end + 2;
        return line;
    }

    private ReadOnlySpan<byte> Take(int count)
    {
        while (_inEnd - _inStart < count) Fill(count);
        var bytes = _in.AsSpan(_inStart, count);
        _inStart += count;
        return bytes;
    }

    private void Fill(int atLeast = 0)
    {
        if (_inStart > 0)
        {
            Buffer.BlockCopy(_in, _inStart, _in, 0, _inEnd - _inStart);
            (_inEnd, _inStart) = (_inEnd - _inStart, 0);
        }
        if (_in.Length - _inEnd < Math.Max(1024, atLeast)) Array.Resize(ref _in, Math.Max(_in.Length * 2, atLeast + 1024));
        var read = _socket.Receive(_in, _inEnd, _in.Length - _inEnd, SocketFlags.None);
        if (read == 0)
        {
            Open = false;
            throw new IOException("The service closed the connection.");
        }
        _inEnd += read;
    }

    public void Dispose() => _socket.Dispose();
}
