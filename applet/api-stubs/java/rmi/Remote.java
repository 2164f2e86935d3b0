package java.rmi;

/** The Java Card 3.0.x API interface of this name (an API stub for compiling). */
public interface Remote {
}
