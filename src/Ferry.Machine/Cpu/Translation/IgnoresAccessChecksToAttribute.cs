namespace System.Runtime.CompilerServices;

/// <summary>
/// Lets a dynamic assembly reach the non-public members of the named assembly (the runtime honours
/// it on assemblies built with AssemblyBuilder): the quick tier's methods call the hart's slow paths
/// and read its TLB and budget fields, as the optimized tier's DynamicMethods do with skipVisibility.
/// </summary>
[AttributeUsage(AttributeTargets.Assembly, AllowMultiple = true)]
internal sealed class IgnoresAccessChecksToAttribute(string assemblyName) : Attribute
{
    public string AssemblyName { get; } = assemblyName;
}
