// Keyboard-first dialogs: the reason for a label, the disposition when closing.
import { useEffect, useRef, useState } from 'react';
import { Kbd } from './bits.js';

export function ReasonDialog(props: {
  title: string;
  hint: string;
  required?: boolean;
  onSubmit(reason: string): void;
  onCancel(): void;
}) {
  const [reason, setReason] = useState('');
  const ref = useRef<HTMLInputElement>(null);
  useEffect(() => ref.current?.focus(), []);
  const submit = () => {
    if (props.required && !reason.trim()) return;
    props.onSubmit(reason.trim());
  };
  return (
    <div className="backdrop">
      <div className="dialog" role="dialog" aria-modal="true" aria-label={props.title}>
        <h3>{props.title}</h3>
        <input
          ref={ref}
          aria-label="reason"
          placeholder={props.required ? 'reason (required)' : 'reason (optional)'}
          value={reason}
          onChange={(e) => setReason(e.target.value)}
          onKeyDown={(e) => {
            if (e.key === 'Enter') {
              e.preventDefault();
              submit();
            }
            if (e.key === 'Escape') {
              e.preventDefault();
              props.onCancel();
            }
          }}
        />
        <p className="muted">
          {props.hint} <Kbd>Enter</Kbd> confirm · <Kbd>Esc</Kbd> cancel
        </p>
      </div>
    </div>
  );
}

export type Disposition = 'true_positive' | 'false_positive' | 'duplicate';

export function CloseDialog(props: { count: number; onSubmit(d: Disposition, reason: string): void; onCancel(): void }) {
  const [choice, setChoice] = useState<Disposition | null>(null);
  const [reason, setReason] = useState('');
  const box = useRef<HTMLDivElement>(null);
  const input = useRef<HTMLInputElement>(null);
  useEffect(() => box.current?.focus(), []);
  useEffect(() => {
    if (choice) input.current?.focus();
  }, [choice]);
  const submit = () => {
    if (!choice) return;
    if (choice === 'false_positive' && !reason.trim()) return;
    props.onSubmit(choice, reason.trim());
  };
  const options: [Disposition, string, string][] = [
    ['true_positive', '1', 'True positive — it was an attack or unwanted content'],
    ['false_positive', '2', 'False positive — legitimate (say why)'],
    ['duplicate', '3', 'Duplicate — already handled elsewhere'],
  ];
  return (
    <div className="backdrop">
      <div
        className="dialog"
        role="dialog"
        aria-modal="true"
        aria-label="Close with disposition"
        tabIndex={-1}
        ref={box}
        onKeyDown={(e) => {
          if (e.target === input.current) return;
          const hit = options.find((o) => o[1] === e.key);
          if (hit) {
            e.preventDefault();
            setChoice(hit[0]);
          }
          if (e.key === 'Escape') props.onCancel();
          if (e.key === 'Enter') submit();
        }}
      >
        <h3>Close {props.count === 1 ? 'item' : `${props.count} items`}</h3>
        <ul className="choices">
          {options.map(([d, key, text]) => (
            <li key={d}>
              <button className={choice === d ? 'chosen' : ''} onClick={() => setChoice(d)}>
                <Kbd>{key}</Kbd> {text}
              </button>
            </li>
          ))}
        </ul>
        {choice ? (
          <input
            ref={input}
            aria-label="reason"
            placeholder={choice === 'false_positive' ? 'why it is legitimate (required)' : 'note (optional)'}
            value={reason}
            onChange={(e) => setReason(e.target.value)}
            onKeyDown={(e) => {
              if (e.key === 'Enter') {
                e.preventDefault();
                submit();
              }
              if (e.key === 'Escape') {
                e.preventDefault();
                props.onCancel();
              }
            }}
          />
        ) : null}
        <p className="muted">
          <Kbd>1</Kbd>/<Kbd>2</Kbd>/<Kbd>3</Kbd> choose · <Kbd>Enter</Kbd> close · <Kbd>Esc</Kbd> cancel
        </p>
      </div>
    </div>
  );
}
