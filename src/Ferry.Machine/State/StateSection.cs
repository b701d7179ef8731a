namespace Ferry.Machine.State;

/// <summary>
/// How one component's saved state is stored in the machine state: a section with a 4-character
/// ASCII tag, a version and a length. A component that changes its encoding bumps its own
/// version; a new device adds its own section (its state record, this descriptor, and a line in
/// the board's <see cref="Board.VirtMachine.DeviceSections"/>) and touches no other.
/// </summary>
public abstract class StateSection
{
    protected StateSection(string tag, ushort version, int maxLength)
    {
        if (tag.Length != 4 || !tag.All(c => c is > ' ' and < (char)0x7F || c == ' '))
        {
            throw new ArgumentException($"section tag '{tag}' is not 4 printable ASCII characters", nameof(tag));
        }

        Tag = tag;
        Version = version;
        MaxLength = maxLength;
    }

    public string Tag { get; }

    /// <summary>The only version this Ferry writes and reads.</summary>
    public ushort Version { get; }

    /// <summary>The largest payload accepted: anything longer is refused before it is read.</summary>
    public int MaxLength { get; }

    public abstract Type StateType { get; }

    internal abstract void WriteObject(BinaryWriter w, object state);

    /// <summary>Reads a payload; throws <see cref="InvalidDataException"/> (or EndOfStreamException) on anything malformed.</summary>
    internal abstract object ReadObject(BinaryReader r);
}

/// <summary>A section holding a <typeparamref name="T"/>, with its writer and reader.</summary>
public sealed class StateSection<T>(string tag, ushort version, int maxLength, Action<BinaryWriter, T> write, Func<BinaryReader, T> read)
    : StateSection(tag, version, maxLength)
    where T : class
{
    public override Type StateType => typeof(T);

    internal override void WriteObject(BinaryWriter w, object state) => write(w, (T)state);

    internal override object ReadObject(BinaryReader r) => read(r);
}
